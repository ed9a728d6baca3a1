// blackwheel marlin_fp4: op schemas (vLLM 0.33's, under torch.ops.blackwheel).
// The CUDA impls are registered by vLLM's marlin.cu / gptq_marlin_repack.cu,
// compiled with -DVLLM_STABLE_LIBRARY_NS=blackwheel (patch 0002).
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(blackwheel, m) {
  m.def(
      "marlin_gemm(Tensor a, Tensor? c_or_none, Tensor b_q_weight, "
      "Tensor? b_bias_or_none,Tensor b_scales, "
      "Tensor? a_scales, Tensor? global_scale, Tensor? b_zeros_or_none, "
      "Tensor workspace, int b_type_id, "
      "SymInt size_m, SymInt size_n, SymInt size_k, "
      "bool use_atomic_add, bool use_fp32_reduce, bool is_zp_float) -> Tensor");
  m.def(
      "gptq_marlin_repack(Tensor b_q_weight, "
      "SymInt size_k, SymInt size_n, int num_bits, bool is_a_8bit) -> Tensor");
}
