# flash_attn_2: the complete FlashAttention-2 of flash-attn 2.8.3 (products/flash-attn.toml):
# forward, split-KV forward (flash_attn_with_kvcache, decode) and, with the
# direction `bwd`, backward; fp16/bf16, causal and not, for the head dims of the
# plan (BLACKWHEEL_FA_HEAD_DIMS, BLACKWHEEL_FA_DIRECTIONS, BLACKWHEEL_FA_DTYPES). Every feature is
# compiled in (dropout, ALiBi, softcap, sliding window, uneven head dims): no
# FLASHATTENTION_DISABLE_*. Kernels from the patched sdist (patches 0001: stable
# ABI, 0002: SM_120 tiles); our launcher csrc/flash_attn_2_cuda/flash_api.cu.
function(blackwheel_family_flash_attn_2)
  set(FA "${BW_SRC_FLASH_ATTN}/csrc/flash_attn")
  set(srcs "${BW_SRC_OWN}/flash_attn_2_cuda/flash_api.cu")
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
    INCLUDES "${FA}" "${FA}/src" "${BW_SRC_CUTLASS}/include"
    DEFINES ${dim_defs} "BW_FA_HEAD_DIMS=\"${dims}\"" "BW_FA_DIRECTIONS=\"${dirs}\""
      BW_FA_BACKWARD=${backward}
    CUDA_FLAGS --use_fast_math
      -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__
      -U__CUDA_NO_HALF2_OPERATORS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__)
endfunction()
