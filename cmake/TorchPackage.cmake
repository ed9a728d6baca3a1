# find_package(Torch) inside an upstream's CMake (vLLM) must find the locked torch, the one
# `lock --check --for-build` checked, not the first torch on CMAKE_PREFIX_PATH.
# scikit-build-core puts the interpreter's own site-packages first there (the user's venv,
# under pip's build isolation too) and the build environment's second, so vLLM's
# find_package(Torch) took the venv's torch (seen 12-07: Torch_DIR = .venv/.../torch while the
# lock had checked /tmp/pip-build-env-*/.../torch): with another torch in that venv, the
# extensions would compile against headers the lock never checked.
#
#   blackwheel_pin_torch_package(<torch dir>)   before the upstream's find_package(Torch):
#                                               Torch_DIR (and Caffe2_DIR) name that torch
#   blackwheel_check_torch_package(<torch dir> <TORCH_INSTALL_PREFIX>)
#                                               after it: another torch found is a FATAL_ERROR
include_guard(GLOBAL)

function(blackwheel_pin_torch_package torch_dir)
  set(cfg "${torch_dir}/share/cmake/Torch")
  if(NOT EXISTS "${cfg}/TorchConfig.cmake")
    message(FATAL_ERROR "blackwheel: the locked torch at ${torch_dir} has no "
                        "${cfg}/TorchConfig.cmake (a torch wheel ships it): reinstall the locked "
                        "torch (the version in torch-lock.toml)")
  endif()
  set(Torch_DIR "${cfg}" CACHE PATH "blackwheel: the locked torch's CMake package" FORCE)
  if(EXISTS "${torch_dir}/share/cmake/Caffe2/Caffe2Config.cmake")
    set(Caffe2_DIR "${torch_dir}/share/cmake/Caffe2" CACHE PATH
        "blackwheel: the locked torch's Caffe2 package" FORCE)
  endif()
endfunction()

function(blackwheel_check_torch_package torch_dir found_prefix)
  if("${found_prefix}" STREQUAL "")
    return()                    # the upstream did not look for torch
  endif()
  file(REAL_PATH "${torch_dir}" want)
  file(REAL_PATH "${found_prefix}" got)
  if(NOT want STREQUAL got)
    message(FATAL_ERROR "blackwheel: the upstream's find_package(Torch) found the torch at "
                        "${got}, not the locked torch at ${want} that the lock check passed. "
                        "Unset TORCH_INSTALL_PREFIX / Torch_DIR in the environment or the cache "
                        "(rm -rf the build dir), then build again.")
  endif()
endfunction()
