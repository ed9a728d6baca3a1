# Included by the first project() of an upstream CMake project
# (CMAKE_PROJECT_TOP_LEVEL_INCLUDES, set by the rendered pyproject of a
# build = "upstream-cmake" product), before any language is enabled:
# the pinned nvcc and its toolkit prefix, as for blackwheel's own builds.
# Expects BW_ROOT and BW_PRODUCT (cmake.define of the rendered pyproject).
list(APPEND CMAKE_MODULE_PATH "${BW_ROOT}/cmake")
include(Python)              # blackwheel_python()
include(Toolchain)           # CMAKE_CUDA_COMPILER, CUDAToolkit_ROOT, CUDA_HOME (+ libcuda stub)
