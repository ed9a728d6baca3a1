# cmake/Reproducible.cmake: flags that make the extensions byte-reproducible.
#
#   include(cmake/Reproducible.cmake)
#   blackwheel_reproducible_flags(
#       [TARGETS tgt ...]             # default: the current directory (call before add_library)
#       [PREFIX_MAPS /old=/new ...])  # extra path prefixes to hide (source cache, ...)
#
#   blackwheel_reproducible_flag_lists(<cuda_var> <cxx_var> <link_var> [PREFIX_MAPS ...])
#       the same flags as lists, without applying them (works in `cmake -P`;
#       tests/builds/test_repro_build.py compiles with exactly these).
#
# Measured with nvcc 13.0.88 (PyPI cuda-toolkit 13.0.3) + g++ 12.2, compiling one
# .cu twice (same directory, then a different one) and comparing the objects /
# the .so, section by section with pyelftools:
#   * plain `nvcc -c`: objects differ even in the SAME directory. Only .strtab
#     differs: the STT_FILE symbol of the host object is nvcc's temporary file,
#     tmpxft_<pid>_00000000-6_<name>.cudafe1.cpp (pid-based).
#     -> `-objtemp` (--objdir-as-tempdir): intermediates are created next to the
#        object and named after it ("<obj>.cudafe1.cpp"), deterministic.
#        `install.strip` would also drop .symtab, but then only in the wheel.
#   * __FILE__ (host code and device assert()) embeds the absolute source path;
#     device code is preprocessed by the host compiler, so ONE host flag,
#     `-Xcompiler=-ffile-prefix-map=OLD=NEW`, fixes both (measured: the .so from
#     two directories become identical). For g++ (.cpp): -ffile-prefix-map
#     (= -fdebug-prefix-map + -fmacro-prefix-map). GCC checks the maps last
#     first, so the general map (source dir) comes before the specific ones
#     (build dir inside it, torch headers, ...).
#   * -lineinfo / -G: the device line table (.nv_debug_line_sass inside the
#     fatbin) keeps the ABSOLUTE source directory; no prefix map reaches it
#     (measured: objects differ with -lineinfo even with the map). Release
#     wheels must not use -lineinfo; a warning is printed if CMAKE_CUDA_FLAGS has it.
#   * -Xcompiler=-g with the map: identical (DW_AT_comp_dir/name remapped).
#   * __DATE__/__TIME__: g++ (also as nvcc's preprocessor) honours
#     SOURCE_DATE_EPOCH (measured: "Nov  1 2026 00:00:00" for 1793491200).
#     It must be in the environment of the *build* (ninja), not only of
#     configure: scikit-build-core exports it (wheel.reproducible, default on).
#     -Wdate-time makes any use visible.
#   * link: no build-id (--build-id=none). Measured 2026-11-23: a SHA1 build-id
#     is computed before install strips the .so, over a symbol table that still
#     holds build-directory file names, so two checkouts differed only there.
#     (Previously:) GNU ld's build-id is a SHA1 of the output, deterministic once the
#     inputs are; it is requested explicitly (--build-id=sha1) so that a
#     toolchain defaulting to "uuid" cannot make it random.
#   * -frandom-seed=<object>: not needed for these sources (identical without
#     it) but GCC uses its seed for some symbol names (e.g. with -flto), so it
#     is set per source file when TARGETS are given.
#   * fatbin compression (default in CUDA 13) is deterministic.

# No build-tree RPATH, ever. CMake links a build-tree RPATH (the absolute paths of
# the linked libraries' directories) and the install step blanks it in place: the
# bytes stay in .dynstr, so the checkout path's LENGTH reached the wheel (measured:
# .dynstr 15 bytes longer for a checkout path 15 characters longer). Linking with
# the install RPATH (empty: torch is loaded before the extensions) writes none.
# Set here, at include time, so that every target created afterwards gets it.
set(CMAKE_SKIP_BUILD_RPATH ON)
set(CMAKE_BUILD_WITH_INSTALL_RPATH ON)
set(CMAKE_INSTALL_RPATH "")

function(_bw_default_prefix_maps out)
  set(maps "${CMAKE_SOURCE_DIR}=/blackwheel/src")
  if(CMAKE_BINARY_DIR AND NOT CMAKE_BINARY_DIR STREQUAL CMAKE_SOURCE_DIR)
    list(APPEND maps "${CMAKE_BINARY_DIR}=/blackwheel/build")
  endif()
  # pip's isolated build env (/tmp/pip-build-env-XXXX/...) holds torch and the
  # CUDA headers; their __FILE__ would carry the random directory name.
  # BW_TORCH_DIR = .../site-packages/torch (cmake/Torch.cmake); TORCH_INSTALL_PREFIX
  # is the same directory when find_package(Torch) was used.
  foreach(_t IN ITEMS "${BW_TORCH_DIR}" "${TORCH_INSTALL_PREFIX}")
    if(_t)
      get_filename_component(_site "${_t}" DIRECTORY)
      list(APPEND maps "${_site}=/blackwheel/site-packages")
      break()
    endif()
  endforeach()
  if(CMAKE_CUDA_COMPILER)
    get_filename_component(_bin "${CMAKE_CUDA_COMPILER}" DIRECTORY)
    get_filename_component(_cuda "${_bin}" DIRECTORY)
    list(APPEND maps "${_cuda}=/blackwheel/cuda")
  endif()
  set(${out} "${maps}" PARENT_SCOPE)
endfunction()

function(blackwheel_reproducible_flag_lists cuda_var cxx_var link_var)
  cmake_parse_arguments(PARSE_ARGV 3 BW "" "" "PREFIX_MAPS")
  _bw_default_prefix_maps(maps)
  list(APPEND maps ${BW_PREFIX_MAPS})
  set(cuda "-objtemp" "-Xcompiler=-Wdate-time")
  set(cxx "-Wdate-time")
  foreach(m IN LISTS maps)
    if(NOT m MATCHES "^/.+=.+$")
      message(FATAL_ERROR "blackwheel_reproducible_flags: PREFIX_MAPS entry '${m}' must be /old/path=/new")
    endif()
    if(m MATCHES ",")
      # nvcc splits -Xcompiler values on commas
      message(FATAL_ERROR "blackwheel_reproducible_flags: '${m}' contains a comma; "
                          "build from a directory without ',' in its path")
    endif()
    list(APPEND cuda "-Xcompiler=-ffile-prefix-map=${m}")
    list(APPEND cxx "-ffile-prefix-map=${m}")
  endforeach()
  set(${cuda_var} "${cuda}" PARENT_SCOPE)
  set(${cxx_var} "${cxx}" PARENT_SCOPE)
  set(${link_var} "LINKER:--build-id=none" PARENT_SCOPE)
endfunction()

function(blackwheel_reproducible_flags)
  cmake_parse_arguments(PARSE_ARGV 0 BW "" "" "TARGETS;PREFIX_MAPS")
  blackwheel_reproducible_flag_lists(cuda cxx link PREFIX_MAPS ${BW_PREFIX_MAPS})
  if("${CMAKE_CUDA_FLAGS} ${CMAKE_CUDA_FLAGS_RELEASE}" MATCHES "(^| )(-lineinfo|--generate-line-info|-G)( |$)")
    message(WARNING "blackwheel: -lineinfo/-G embed absolute source paths in the device code; "
                    "the wheel will not be reproducible across build directories")
  endif()
  if(NOT DEFINED ENV{SOURCE_DATE_EPOCH})
    message(WARNING "blackwheel: SOURCE_DATE_EPOCH is not set; __DATE__/__TIME__ would "
                    "embed the build time (scikit-build-core sets it; export it for plain cmake builds)")
  endif()
  # (each generator expression stays one quoted argument: its value is a list)
  if(BW_TARGETS)
    foreach(t IN LISTS BW_TARGETS)
      target_compile_options(${t} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${cuda}>"
                                          "$<$<COMPILE_LANGUAGE:CXX,C>:${cxx}>")
      target_link_options(${t} PRIVATE ${link})
      get_target_property(srcs ${t} SOURCES)
      get_target_property(tsrc ${t} SOURCE_DIR)
      foreach(s IN LISTS srcs)
        if(s MATCHES "\\.(cu|cpp|cc|cxx|c)$")
          cmake_path(ABSOLUTE_PATH s BASE_DIRECTORY "${tsrc}" OUTPUT_VARIABLE abs)
          cmake_path(RELATIVE_PATH abs BASE_DIRECTORY "${CMAKE_SOURCE_DIR}" OUTPUT_VARIABLE rel)
          set_property(SOURCE "${s}" TARGET_DIRECTORY ${t} APPEND PROPERTY COMPILE_OPTIONS
                       "$<IF:$<COMPILE_LANGUAGE:CUDA>,-Xcompiler=-frandom-seed=${rel},-frandom-seed=${rel}>")
        endif()
      endforeach()
    endforeach()
  else()
    add_compile_options("$<$<COMPILE_LANGUAGE:CUDA>:${cuda}>" "$<$<COMPILE_LANGUAGE:CXX,C>:${cxx}>")
    add_link_options(${link})
  endif()
endfunction()
