# blackwheel's controls around an upstream project's own CMake (a products/<name>.toml
# with build = "upstream-cmake", e.g. vllm). Included right after the upstream
# project() (CMAKE_PROJECT_<project>_INCLUDE, set by the rendered pyproject), so
# everything here happens before the upstream CMakeLists.txt creates a target;
# blackwheel_upstream_finish() runs when it is done (a deferred call).
#
# Expects BW_ROOT, BW_PRODUCT, BW_UPSTREAM_TARGETS (the extension targets to build),
# BW_UPSTREAM_EXCLUDE (source path prefixes taken out of them: a reduced subset),
# BW_UPSTREAM_PYTHON_VARIABLE (optional: the variable that names the interpreter).
# Nothing of the upstream's target logic is re-implemented: it decides its sources,
# per-source archs (cuda_archs_loose_intersection) and flags itself.
include(CxxRuntime)
blackwheel_check_cxx_runtime()
# 1. the torch lock, before anything compiles; the upstream's find_package(Torch) finds that torch
blackwheel_python(lock --check --for-build)
include(TorchPackage)
execute_process(COMMAND "${Python_EXECUTABLE}" -c "import os, torch; print(os.path.dirname(torch.__file__))"
                OUTPUT_VARIABLE BW_LOCKED_TORCH_DIR OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _bw_rc)
if(NOT _bw_rc EQUAL 0)
  message(FATAL_ERROR "blackwheel: cannot import torch with ${Python_EXECUTABLE}")
endif()
blackwheel_pin_torch_package("${BW_LOCKED_TORCH_DIR}")
# 2. archs x families, prepared sources (cutlass), job counts: plan.cmake
include(Plan)
# the upstream reads its targets' archs from torch's TORCH_CUDA_ARCH_LIST (find_package(Torch))
set(ENV{TORCH_CUDA_ARCH_LIST} "${BW_ARCHS}")
set(NVCC_THREADS "${BW_NVCC_THREADS}")
if(BW_UPSTREAM_PYTHON_VARIABLE)     # e.g. VLLM_PYTHON_EXECUTABLE: the interpreter building this
  set(${BW_UPSTREAM_PYTHON_VARIABLE} "${Python_EXECUTABLE}")
endif()
# 3. compiler cache, and no build-tree RPATH (Reproducible.cmake, at include time)
include(CompilerCache)
blackwheel_compiler_cache()
include(Reproducible)
include(BuildInfo)
set(BW_INSTALL_COMPONENT blackwheel)   # our installs: one component beside the targets'

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL blackwheel_upstream_finish)

function(blackwheel_upstream_finish)
  blackwheel_check_torch_package("${BW_LOCKED_TORCH_DIR}" "${TORCH_INSTALL_PREFIX}")
  # The product's families: a [family.*] with a `library` is blackwheel's own, compiled here
  # by its cmake/kernels module (e.g. flash_attn_2 -> vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so);
  # the others describe the upstream's own targets.
  set(upstream_families)
  set(own_targets)
  foreach(f IN LISTS BW_FAMILIES)
    string(TOUPPER "${f}" up)
    if(BW_${up}_LIBRARY)
      if(NOT TARGET bw_torch)
        include(Torch)          # bw_torch: the locked torch's headers and libraries
        include(Extension)      # blackwheel_add_extension()
        include(kernels/FlashAttn2)
      endif()
      cmake_language(CALL blackwheel_family_${f})
      list(APPEND own_targets bw_${f})
    else()
      list(APPEND upstream_families ${f})
    endif()
  endforeach()
  foreach(t IN LISTS BW_UPSTREAM_TARGETS)
    if(NOT TARGET ${t})
      message(FATAL_ERROR "blackwheel: ${BW_PRODUCT}'s CMake defined no target '${t}' "
                          "(products/${BW_PRODUCT}.toml [upstream-cmake] targets)")
    endif()
    # a reduced subset: take the excluded sources out of the target
    if(BW_UPSTREAM_EXCLUDE)
      get_target_property(srcs ${t} SOURCES)
      set(kept)
      set(dropped 0)
      foreach(s IN LISTS srcs)
        cmake_path(ABSOLUTE_PATH s BASE_DIRECTORY "${CMAKE_SOURCE_DIR}" OUTPUT_VARIABLE abs)
        cmake_path(RELATIVE_PATH abs BASE_DIRECTORY "${CMAKE_SOURCE_DIR}" OUTPUT_VARIABLE rel)
        set(drop FALSE)
        foreach(prefix IN LISTS BW_UPSTREAM_EXCLUDE)
          string(FIND "${rel}" "${prefix}" at)
          if(at EQUAL 0)
            set(drop TRUE)
          endif()
        endforeach()
        if(drop)
          math(EXPR dropped "${dropped} + 1")
        else()
          list(APPEND kept "${s}")
        endif()
      endforeach()
      set_property(TARGET ${t} PROPERTY SOURCES "${kept}")
      if(dropped GREATER 0)
        message(STATUS "blackwheel: ${t}: ${dropped} source(s) left out (${BW_UPSTREAM_EXCLUDE})")
      endif()
    endif()
    set_property(TARGET ${t} PROPERTY BW_FAMILY "${upstream_families}")
    set_property(GLOBAL APPEND PROPERTY BW_EXTENSION_TARGETS ${t})
  endforeach()
  # libraries a target uses that the upstream does not link (BW_UPSTREAM_LINK:
  # target=lib,lib;...), so that the post-link ABI check finds every symbol's provider
  foreach(entry IN LISTS BW_UPSTREAM_LINK)
    string(REPLACE "=" ";" parts "${entry}")
    list(GET parts 0 t)
    list(GET parts 1 libs)
    string(REPLACE "," ";" libs "${libs}")
    target_link_libraries(${t} PRIVATE ${libs})
    message(STATUS "blackwheel: ${t} links ${libs} (products/${BW_PRODUCT}.toml [upstream-cmake] link)")
  endforeach()
  # prefix maps, -objtemp, no build-id, per-source -frandom-seed: on the upstream targets
  blackwheel_reproducible_flags(TARGETS ${BW_UPSTREAM_TARGETS} ${own_targets}
                                PREFIX_MAPS "${BW_SOURCE_ROOT}=/blackwheel/sources")
  # upstream's Python, as upstream wrote it (patched), beside its extensions
  foreach(pkg IN LISTS BW_PRODUCT_UPSTREAM_PACKAGES)
    install(DIRECTORY "${pkg}" DESTINATION "." COMPONENT ${BW_INSTALL_COMPONENT}
            PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)
  endforeach()
  foreach(pkg IN LISTS BW_PRODUCT_OWN_PACKAGES)
    install(DIRECTORY "${BW_ROOT}/python/${pkg}" DESTINATION "." COMPONENT ${BW_INSTALL_COMPONENT}
            PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)
  endforeach()
  # the one runtime every product carries (record reader, arch rules, torch guard,
  # doctor), next to the build record: <record package>/_runtime (patch 0005 calls it)
  install(DIRECTORY "${BW_ROOT}/python/blackwheel_runtime/" DESTINATION "${BW_RECORD_PACKAGE}/_runtime"
          COMPONENT ${BW_INSTALL_COMPONENT}
          FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
  set(BW_RECORD_LIBRARIES)
  foreach(t IN LISTS BW_UPSTREAM_TARGETS)
    list(APPEND BW_RECORD_LIBRARIES "${t}.abi3.so")   # USE_SABI targets: <name>.abi3.so
  endforeach()
  blackwheel_build_info()
endfunction()
