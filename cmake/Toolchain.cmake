# The CUDA compiler is an input like torch: by default nvcc from the PyPI
# cuda-toolkit wheels pinned in build-system.requires; BLACKWHEEL_NVCC=system
# (or a path) uses another. Must run before project().
blackwheel_python(plan --stage toolchain --build-dir "${CMAKE_BINARY_DIR}"
                  --out "${CMAKE_BINARY_DIR}/toolchain.cmake")
include("${CMAKE_BINARY_DIR}/toolchain.cmake")
