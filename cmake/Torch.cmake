# The locked torch. 1) Refuse, before compiling anything, a torch in the build
# environment that differs from torch-lock.toml. 2) An imported target with
# torch's headers and libraries.
#
# We do not call find_package(Torch): its Caffe2 config insists on a full CUDA
# toolkit layout (cuDNN, NVTX, arch autodetection, global gencode flags) that the
# stable-ABI extensions never use. What they need is torch's include directory,
# its libraries for the C shim (libtorch*.so, libc10*.so) and the CXX11 ABI flag.
blackwheel_python(lock --check --for-build)

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
  OUTPUT_VARIABLE _bw_torch OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "blackwheel: cannot import torch with ${Python_EXECUTABLE}")
endif()
string(REPLACE "\n" ";" _bw_torch "${_bw_torch}")
list(GET _bw_torch 0 BW_TORCH_DIR)
list(GET _bw_torch 1 BW_TORCH_CXX11_ABI)
list(GET _bw_torch 2 BW_TORCH_VERSION)
message(STATUS "blackwheel: torch ${BW_TORCH_VERSION} at ${BW_TORCH_DIR}")

find_package(CUDAToolkit REQUIRED)

add_library(bw_torch INTERFACE)
target_include_directories(bw_torch SYSTEM INTERFACE "${BW_TORCH_DIR}/include")
target_compile_definitions(bw_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${BW_TORCH_CXX11_ABI})
# Only what the extension really uses stays in DT_NEEDED (--as-needed); the
# post-link ABI check proves every undefined symbol resolves in these.
set(_bw_torch_libs)
foreach(lib torch torch_cpu torch_cuda c10 c10_cuda)
  if(EXISTS "${BW_TORCH_DIR}/lib/lib${lib}.so")
    list(APPEND _bw_torch_libs "${BW_TORCH_DIR}/lib/lib${lib}.so")
  endif()
endforeach()
# vLLM's torch_utils.h includes cublas_v2.h. The PyPI toolkit has it; a system CUDA
# without cuBLAS headers gets them from torch's own nvidia-cublas wheel.
list(GET CUDAToolkit_INCLUDE_DIRS 0 _bw_cuda_inc)
if(NOT EXISTS "${_bw_cuda_inc}/cublas_v2.h")
  get_filename_component(_bw_site "${BW_TORCH_DIR}" DIRECTORY)
  file(GLOB _bw_cublas_inc "${_bw_site}/nvidia/cu*/include/cublas_v2.h" "${_bw_site}/nvidia/cublas/include/cublas_v2.h")
  if(_bw_cublas_inc)
    list(GET _bw_cublas_inc 0 _bw_cublas_h)
    get_filename_component(_bw_cublas_dir "${_bw_cublas_h}" DIRECTORY)
    target_include_directories(bw_torch SYSTEM INTERFACE "$<BUILD_INTERFACE:${_bw_cublas_dir}>")
    message(STATUS "blackwheel: cuBLAS headers from ${_bw_cublas_dir} (not in ${_bw_cuda_inc})")
  endif()
endif()
# libstdc++ first: the linker binds a symbol to the first library that defines it,
# and torch's libraries export some std:: template instances (torch 2.11's libtorch.so
# has basic_stringbuf::str() const&). Bound there, an extension would depend on torch
# re-exporting the C++ runtime, which the stable ABI does not promise (the post-link
# abi-check refuses it; seen with a g++ that links libstdc++ statically).
target_link_libraries(bw_torch INTERFACE "-Wl,--as-needed" stdc++ ${_bw_torch_libs} CUDA::cudart)
