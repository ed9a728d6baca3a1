# flash_attn: FlashAttention-2 forward kernels (mma.sync; sm_80..sm_120) from the
# flash-attn sdist, for the head dims in the plan (BLACKWHEEL_FA_HEAD_DIMS), fp16
# and bf16, causal and not. Built on the LibTorch stable ABI (patch 0001) with
# our own op binding (csrc/flash_attn/flash_api.cu). Inference-only build:
# dropout, ALiBi, softcap, sliding window and uneven head dims are compiled out
# (FLASHATTENTION_DISABLE_*), which also cuts each TU's compile time.
function(blackwheel_family_flash_attn)
  set(FA "${BW_SRC_FLASH_ATTN}/csrc/flash_attn")
  set(srcs "${BW_SRC_OWN}/flash_attn/flash_api.cu")
  set(dim_defs)
  foreach(d IN LISTS BW_FLASH_ATTN_HEAD_DIMS)
    foreach(dt bf16 fp16)
      foreach(c "" "_causal")
        list(APPEND srcs "${FA}/src/flash_fwd_hdim${d}_${dt}${c}_sm80.cu")
      endforeach()
    endforeach()
    list(APPEND dim_defs BW_FA_HDIM${d}=1)
  endforeach()
  list(JOIN BW_FLASH_ATTN_HEAD_DIMS "," dims)
  blackwheel_add_extension(FAMILY flash_attn
    SOURCES ${srcs}
    INCLUDES "${FA}" "${FA}/src" "${BW_SRC_CUTLASS}/include"
    DEFINES ${dim_defs} "BW_FA_HEAD_DIMS=\"${dims}\""
      FLASHATTENTION_DISABLE_BACKWARD FLASHATTENTION_DISABLE_DROPOUT
      FLASHATTENTION_DISABLE_ALIBI FLASHATTENTION_DISABLE_SOFTCAP
      FLASHATTENTION_DISABLE_LOCAL FLASHATTENTION_DISABLE_UNEVEN_K
    CUDA_FLAGS --use_fast_math
      -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__
      -U__CUDA_NO_HALF2_OPERATORS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__)
endfunction()
