# blackwheel_add_extension(FAMILY <name> SOURCES ... [INCLUDES ...] [DEFINES ...]
#                          [CUDA_FLAGS ...])
# One shared library per kernel family: blackwheel/_<family>.abi3.so. No Python
# C-API (loaded with torch.ops.load_library), ops under torch.ops.blackwheel.
function(blackwheel_add_extension)
  cmake_parse_arguments(ARG "" "FAMILY" "SOURCES;INCLUDES;DEFINES;CUDA_FLAGS" ${ARGN})
  set(target bw_${ARG_FAMILY})
  string(TOUPPER "${ARG_FAMILY}" up)
  add_library(${target} MODULE ${ARG_SOURCES})
  # blackwheel/_<family>.abi3.so, unless the product names the library
  # (BW_<FAMILY>_LIBRARY from the plan, e.g. flash_attn_2_cuda/_C.abi3.so)
  set(output "_${ARG_FAMILY}")
  set(destination blackwheel)
  if(BW_${up}_LIBRARY)
    get_filename_component(destination "${BW_${up}_LIBRARY}" DIRECTORY)
    get_filename_component(output "${BW_${up}_LIBRARY}" NAME)
    string(REGEX REPLACE "\\.abi3\\.so$" "" output "${output}")
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${output}" SUFFIX ".abi3.so"
    CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON
    CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
    CUDA_ARCHITECTURES OFF              # gencode flags come from the plan
    CUDA_RUNTIME_LIBRARY Shared         # torch's libcudart.so.13, never a static copy
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden CUDA_VISIBILITY_PRESET hidden)
  target_include_directories(${target} PRIVATE ${ARG_INCLUDES})
  target_compile_definitions(${target} PRIVATE
    ${ARG_DEFINES}
    USE_CUDA
    # stable ABI: only C-shim APIs available in torch >= 2.11 (same as vLLM 0.33)
    TORCH_TARGET_VERSION=0x020B000000000000ULL)
  # every CUDA source without its own arch subset gets all of the family's archs
  foreach(src IN LISTS ARG_SOURCES)
    get_source_file_property(has "${src}" BW_HAS_GENCODE)
    if(src MATCHES "\\.cu$" AND NOT has)
      set_source_files_properties("${src}" PROPERTIES COMPILE_OPTIONS "${BW_${up}_GENCODE}")
    endif()
  endforeach()
  # Deterministic generated names: nvcc derives the names of internal-linkage
  # symbols (_INTERNAL_<hash>_<file>) from a random seed tied to the file's
  # absolute path; -frandom-seed (nvcc's own, also passed to the host compiler)
  # fixes it per source, so two checkouts in different directories give the
  # same binaries (measured: without it _nvfp4/_flash_attn differed in .rodata
  # and .nv_fatbin). Seeds differ per file, as nvcc requires.
  foreach(src IN LISTS ARG_SOURCES)
    get_filename_component(base "${src}" NAME)
    set_property(SOURCE "${src}" APPEND PROPERTY COMPILE_OPTIONS "-frandom-seed=${ARG_FAMILY}/${base}")
  endforeach()
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-O3 -DNDEBUG
      --expt-relaxed-constexpr --expt-extended-lambda -DENABLE_FP8
      --compress-mode=size --threads=${BW_NVCC_THREADS} ${ARG_CUDA_FLAGS}>
    $<$<COMPILE_LANGUAGE:CXX>:-O3 -DNDEBUG>)
  target_link_libraries(${target} PRIVATE bw_torch)
  target_link_options(${target} PRIVATE "-Wl,--no-undefined-version")
  if(BW_INSTALL_COMPONENT)   # inside an upstream CMake project (UpstreamProduct.cmake)
    install(TARGETS ${target} LIBRARY DESTINATION "${destination}" COMPONENT ${BW_INSTALL_COMPONENT})
  else()
    install(TARGETS ${target} LIBRARY DESTINATION "${destination}")
  endif()
  set_property(TARGET ${target} PROPERTY BW_FAMILY ${ARG_FAMILY})
  set_property(GLOBAL APPEND PROPERTY BW_EXTENSION_TARGETS ${target})
endfunction()

# blackwheel_gencode(OUT <var> ARCHS <12.0a;9.0a;8.0+PTX...>)
# nvcc -gencode flags for a subset of a family's archs (per-source targets:
# SM120-only CUTLASS sources get only the 12.x archs, and so on).
function(blackwheel_gencode)
  cmake_parse_arguments(ARG "" "OUT" "ARCHS" ${ARGN})
  set(flags)
  foreach(a IN LISTS ARG_ARCHS)
    if(NOT a MATCHES "^([0-9]+)\\.([0-9])([af]?)(\\+PTX)?$")
      message(FATAL_ERROR "blackwheel: bad arch '${a}'")
    endif()
    set(n "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
    list(APPEND flags "-gencode=arch=compute_${n},code=sm_${n}")
    if(CMAKE_MATCH_4)
      list(APPEND flags "-gencode=arch=compute_${n},code=compute_${n}")
    endif()
  endforeach()
  set(${ARG_OUT} "${flags}" PARENT_SCOPE)
endfunction()

# blackwheel_archs_matching(OUT <var> ARCHS <list> REGEX <re>): filter archs.
function(blackwheel_archs_matching)
  cmake_parse_arguments(ARG "" "OUT;REGEX" "ARCHS" ${ARGN})
  set(out)
  foreach(a IN LISTS ARG_ARCHS)
    if(a MATCHES "${ARG_REGEX}")
      list(APPEND out "${a}")
    endif()
  endforeach()
  set(${ARG_OUT} "${out}" PARENT_SCOPE)
endfunction()

# blackwheel_source_archs(ARCHS <list> SOURCES <files>): compile these sources
# for these archs only (instead of all of the family's).
function(blackwheel_source_archs)
  cmake_parse_arguments(ARG "" "" "ARCHS;SOURCES" ${ARGN})
  blackwheel_gencode(OUT flags ARCHS ${ARG_ARCHS})
  set_source_files_properties(${ARG_SOURCES} PROPERTIES
    COMPILE_OPTIONS "${flags}" BW_HAS_GENCODE ON)
endfunction()
