# flash_attn_2: the complete FlashAttention-2 of flash-attn 2.8.3 (products/flash-attn.toml):
# forward, split-KV forward (flash_attn_with_kvcache, decode) and, with the
# direction `bwd`, backward; fp16/bf16, causal and not, for the head dims of the
# plan (BLACKWHEEL_FA_HEAD_DIMS, BLACKWHEEL_FA_DIRECTIONS, BLACKWHEEL_FA_DTYPES). Every feature is
# compiled in (dropout, ALiBi, softcap, sliding window, uneven head dims): no
# FLASHATTENTION_DISABLE_*. Kernels from the patched sdist (patches 0001: stable
# ABI, 0002: SM_120 tiles, 0004: paged KV with any page size); the one front end
# csrc/flash_attn_2_cuda/fa2_launch.h, under the ops of the product's `frontend`:
#   flash_attn_2_cuda (default): flash_api.cu, torch.ops.flash_attn_2_cuda (flash_attn product)
#   vllm_fa2: vllm_fa2_api.cu, torch.ops._vllm_fa2_C, plus the Python module init of
#             vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so (vllm product)
function(blackwheel_family_flash_attn_2)
  set(FA "${BW_SRC_FLASH_ATTN}/csrc/flash_attn")
  set(frontend "${BW_FLASH_ATTN_2_FRONTEND}")
  if(NOT frontend)
    set(frontend flash_attn_2_cuda)
  endif()
  set(py_includes)
  if(frontend STREQUAL "flash_attn_2_cuda")
    set(srcs "${BW_SRC_OWN}/flash_attn_2_cuda/flash_api.cu")
  elseif(frontend STREQUAL "vllm_fa2")
    set(srcs "${BW_SRC_OWN}/flash_attn_2_cuda/vllm_fa2_api.cu"
             "${BW_SRC_OWN}/flash_attn_2_cuda/vllm_fa2_module.cpp")
    if(NOT Python_INCLUDE_DIRS)
      message(FATAL_ERROR "blackwheel: flash_attn_2 frontend vllm_fa2 needs Python's headers "
                          "(Python_INCLUDE_DIRS; vLLM's CMake finds them with Development.Module)")
    endif()
    set(py_includes ${Python_INCLUDE_DIRS})
  else()
    message(FATAL_ERROR "blackwheel: flash_attn_2: unknown frontend '${frontend}' "
                        "(products/<name>.toml [family.flash_attn_2] frontend: flash_attn_2_cuda or vllm_fa2)")
  endif()
  set(kinds fwd fwd_split)
  set(backward 0)
  if("bwd" IN_LIST BW_FLASH_ATTN_2_DIRECTIONS)
    list(APPEND kinds bwd)
    set(backward 1)
  endif()
  set(dim_defs)
  foreach(d IN LISTS BW_FLASH_ATTN_2_HEAD_DIMS)
    foreach(kind IN LISTS kinds)
      foreach(dt IN LISTS BW_FLASH_ATTN_2_DTYPES)
        foreach(c "" "_causal")
          list(APPEND srcs "${FA}/src/flash_${kind}_hdim${d}_${dt}${c}_sm80.cu")
        endforeach()
      endforeach()
    endforeach()
    if(d LESS_EQUAL 128)   # patch 0005: the paged prefill tile, in TUs of its own
      foreach(dt IN LISTS BW_FLASH_ATTN_2_DTYPES)
        foreach(c "" "_causal")
          list(APPEND srcs "${CMAKE_CURRENT_BINARY_DIR}/fa2_prefill/flash_fwd_prefill_hdim${d}_${dt}${c}_sm80.cu")
          set(elem cutlass::half_t)
          if(dt STREQUAL "bf16")
            set(elem cutlass::bfloat16_t)
          endif()
          set(causal false)
          if(c)
            set(causal true)
          endif()
          file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/fa2_prefill/flash_fwd_prefill_hdim${d}_${dt}${c}_sm80.cu"
            CONTENT "// Written by blackwheel's cmake/kernels/FlashAttn2.cmake (patch 0005's paged prefill tile).
#include \"namespace_config.h\"
#include \"flash_fwd_launch_template.h\"

namespace FLASH_NAMESPACE {

template<typename T, int Headdim, bool Is_causal>
void run_mha_fwd_paged_prefill(Flash_fwd_params &params, cudaStream_t stream) {
    run_mha_fwd_paged_prefill_impl<T, Headdim, Is_causal>(params, stream);
}
template void run_mha_fwd_paged_prefill<${elem}, ${d}, ${causal}>(Flash_fwd_params &params, cudaStream_t stream);

} // namespace FLASH_NAMESPACE
")
        endforeach()
      endforeach()
    endif()
    list(APPEND dim_defs BW_FA_HDIM${d}=1)
  endforeach()
  foreach(dt IN LISTS BW_FLASH_ATTN_2_DTYPES)
    string(TOUPPER "${dt}" DT)
    list(APPEND dim_defs BW_FA_${DT}=1)
  endforeach()
  list(JOIN BW_FLASH_ATTN_2_HEAD_DIMS "," dims)
  list(JOIN BW_FLASH_ATTN_2_DIRECTIONS "," dirs)
  blackwheel_add_extension(FAMILY flash_attn_2
    SOURCES ${srcs}
    INCLUDES "${FA}" "${FA}/src" "${BW_SRC_CUTLASS}/include" ${py_includes}
    DEFINES ${dim_defs} "BW_FA_HEAD_DIMS=\"${dims}\"" "BW_FA_DIRECTIONS=\"${dirs}\""
      BW_FA_BACKWARD=${backward}
    CUDA_FLAGS --use_fast_math
      -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__
      -U__CUDA_NO_HALF2_OPERATORS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__)
endfunction()
