# The C++ runtime must be the shared libstdc++.so.6 that torch itself loads.
# A g++ that only has libstdc++.a links a private copy of the runtime into each
# extension: two C++ runtimes in one process, and the first exception an op
# throws (e.g. "no kernel for this GPU") is a segfault. Measured 2026-11-24 on
# the H100 host (CXX=/opt/gcc/bin/g++, a g++ 13.3 wrapper without libstdc++.so).
# Refuse it at configure, before compiling; the post-link abi-check also catches
# it (problem "static-runtime").
function(blackwheel_check_cxx_runtime)
  set(compilers "${CMAKE_CXX_COMPILER}")
  if(CMAKE_CUDA_HOST_COMPILER)
    list(APPEND compilers "${CMAKE_CUDA_HOST_COMPILER}")
  endif()
  list(REMOVE_DUPLICATES compilers)
  foreach(cxx IN LISTS compilers)
    execute_process(COMMAND "${cxx}" -print-file-name=libstdc++.so
                    OUTPUT_VARIABLE lib OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0 OR NOT IS_ABSOLUTE "${lib}")
      message(FATAL_ERROR
        "blackwheel: ${cxx} has no shared libstdc++ (libstdc++.so); it would link the C++ "
        "runtime statically into the extensions, next to the libstdc++.so.6 that torch "
        "loads, and the first exception an op throws would crash the process. Use a g++ "
        "that links libstdc++.so.6, e.g. CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++ "
        "(then remove the build directory).")
    endif()
  endforeach()
endfunction()
