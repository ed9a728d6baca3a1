# Resolve kernel sets x archs (BLACKWHEEL_KERNELS / BLACKWHEEL_ARCHS /
# TORCH_CUDA_ARCH_LIST), prepare the pinned upstream sources, decide job counts.
set(BLACKWHEEL_KERNELS "" CACHE STRING "kernel sets to build (default: all); also env BLACKWHEEL_KERNELS")
set(BLACKWHEEL_ARCHS "" CACHE STRING "CUDA archs, e.g. 12.0a;9.0a; also env BLACKWHEEL_ARCHS / TORCH_CUDA_ARCH_LIST")
# lists travel comma-separated (a ';' would split the argument)
string(REPLACE ";" "," _bw_archs "${BLACKWHEEL_ARCHS}")
string(REPLACE ";" "," _bw_kernels "${BLACKWHEEL_KERNELS}")
blackwheel_python(plan --stage kernels --product "${BW_PRODUCT}" --build-dir "${CMAKE_BINARY_DIR}"
                  --out "${CMAKE_BINARY_DIR}/plan.cmake"
                  "--archs=${_bw_archs}" "--kernels=${_bw_kernels}"
                  --nvcc "${CMAKE_CUDA_COMPILER}"
                  "--compiler-cache=${BLACKWHEEL_COMPILER_CACHE}")
include("${CMAKE_BINARY_DIR}/plan.cmake")

# The plan depends on these files: re-run configure when they change.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${BW_ROOT}/blackwheel.toml" "${BW_ROOT}/torch-lock.toml")
file(GLOB _bw_products CONFIGURE_DEPENDS "${BW_ROOT}/products/*.toml")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_bw_products})
file(GLOB_RECURSE _bw_patches CONFIGURE_DEPENDS "${BW_ROOT}/patches/*.patch")
# csrc/ is compiled from its content-addressed copy under the fixed source root
# (BW_SRC_OWN, see blackwheel_factory.sources.fetch.stage_tree): an edit re-stages it.
file(GLOB_RECURSE _bw_own CONFIGURE_DEPENDS "${BW_ROOT}/csrc/*")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_bw_own})

# Parallelism (ninja job pools; pyproject's build.tool-args = ["-j0"] leaves the limit
# to them): at most BW_JOBS compiles at once -- memory-aware on this host, or the farm's
# cores when an sccache-dist farm answers (SCCACHE_CONF [dist]) -- and BW_LINK_JOBS
# links (each with its post-link ABI check), which always run here.
if(NOT DEFINED BW_LINK_JOBS)
  set(BW_LINK_JOBS ${BW_JOBS})
endif()
set_property(GLOBAL APPEND PROPERTY JOB_POOLS bw_compile=${BW_JOBS} bw_link=${BW_LINK_JOBS})
set(CMAKE_JOB_POOL_COMPILE bw_compile)
set(CMAKE_JOB_POOL_LINK bw_link)
if(BW_FARM_WARNING)
  message(WARNING "blackwheel: ${BW_FARM_WARNING}")
endif()
