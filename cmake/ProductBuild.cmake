# Everything after project(), shared by every product: the kernel pack (root
# CMakeLists.txt, products/kernel-pack.toml) and the other products/<name>.toml wheels
# (CMakeLists.txt rendered by `python -m blackwheel_factory wheel <name>`). Expects
# BW_ROOT (the checkout) and BW_PRODUCT (a products/ name: kernel-pack, flash-attn).
include(CxxRuntime)          # refuse a g++ without libstdc++.so (static C++ runtime)
blackwheel_check_cxx_runtime()
include(Torch)               # lock check before anything compiles; torch include/lib target
include(Plan)                # families x archs, prepared upstream sources, job counts
include(CompilerCache)       # sccache/ccache launcher when present
include(Reproducible)        # prefix maps, no timestamps
include(Extension)           # blackwheel_add_extension()
include(kernels/ScaledMM)
include(kernels/Nvfp4)
include(kernels/MarlinFp4)
include(kernels/FlashAttn)
include(kernels/FlashAttn2)
include(BuildInfo)           # _build_info.json + post-link ABI check

blackwheel_compiler_cache()
blackwheel_reproducible_flags(PREFIX_MAPS "${BW_SOURCE_ROOT}=/blackwheel/sources")
foreach(family IN LISTS BW_FAMILIES)
  cmake_language(CALL blackwheel_family_${family})
endforeach()

# A product ships Python besides its extensions: packages from the upstream tree
# (as upstream wrote them, patched) and our own from python/ of this checkout.
foreach(pkg IN LISTS BW_PRODUCT_UPSTREAM_PACKAGES)
  install(DIRECTORY "${pkg}" DESTINATION "."
          PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)
endforeach()
foreach(pkg IN LISTS BW_PRODUCT_OWN_PACKAGES)
  install(DIRECTORY "${BW_ROOT}/python/${pkg}" DESTINATION "."
          PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE
          PATTERN "_runtime" EXCLUDE)     # a symlink in the checkout: installed below
endforeach()
# Every product carries its own copy of the runtime (record reader, arch rules,
# torch-lock guard, doctor) as <record package>/_runtime, next to its build record:
# python/blackwheel_runtime, copied at build time (in the checkout,
# python/<package>/_runtime is a symlink to it). Never a build-tooling module.
install(DIRECTORY "${BW_ROOT}/python/blackwheel_runtime/" DESTINATION "${BW_RECORD_PACKAGE}/_runtime"
        FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
blackwheel_build_info()
