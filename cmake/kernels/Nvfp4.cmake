# nvfp4: vLLM's NVFP4 activation quantization (scaled_fp4_quant) and the SM120
# CUTLASS block-scaled FP4 GEMM (cutlass_scaled_fp4_mm). SM_120 family only.
# vLLM's nvfp4_quant_entry.cu also dispatches MoE/fused variants we do not
# build, so the quantization entry is ours (csrc/nvfp4/quant_entry.cu).
function(blackwheel_family_nvfp4)
  set(V "${BW_SRC_VLLM}")
  set(F "${V}/csrc/quantization/fp4")
  blackwheel_add_extension(FAMILY nvfp4
    SOURCES
      "${F}/nvfp4_quant_kernels.cu"
      "${F}/nvfp4_scaled_mm_sm120_kernels.cu"
      "${F}/nvfp4_scaled_mm_entry.cu"
      "${V}/csrc/cuda_utils_kernels.cu"
      "${BW_SRC_OWN}/nvfp4/quant_entry.cu"
    INCLUDES "${V}/csrc" "${F}" "${BW_SRC_CUTLASS}/include" "${BW_SRC_CUTLASS}/tools/util/include"
    DEFINES ENABLE_NVFP4_SM120=1)
endfunction()
