// blackwheel flash_attn: FlashAttention-2 forward (no varlen, no KV cache) as
// torch.ops.blackwheel.flash_attn_fwd, on the LibTorch stable ABI.
//
// Follows flash-attn 2.8.3's mha_fwd() (flash_api.cpp) for what blackwheel
// builds: fp16/bf16, head dims compiled in (BW_FA_HDIM*), causal or not, GQA,
// no dropout/ALiBi/softcap/window, one split (the non-split kernels).
// Causal masking is FlashAttention's: aligned to the bottom-right corner of
// the attention matrix when seqlen_q != seqlen_k.
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/shim_utils.h>

#include "namespace_config.h"
#include "flash.h"

using torch::stable::Tensor;
using torch::headeronly::ScalarType;

namespace {

bool head_dim_built(int d) {
  switch (d) {
#if BW_FA_HDIM32
    case 32: return true;
#endif
#if BW_FA_HDIM64
    case 64: return true;
#endif
#if BW_FA_HDIM96
    case 96: return true;
#endif
#if BW_FA_HDIM128
    case 128: return true;
#endif
#if BW_FA_HDIM192
    case 192: return true;
#endif
#if BW_FA_HDIM256
    case 256: return true;
#endif
    default: return false;
  }
}

template <typename T, bool Causal>
void run_for_dtype(FLASH_NAMESPACE::Flash_fwd_params& p, cudaStream_t s) {
  switch (p.d) {
#if BW_FA_HDIM32
    case 32: return FLASH_NAMESPACE::run_mha_fwd_<T, 32, Causal>(p, s);
#endif
#if BW_FA_HDIM64
    case 64: return FLASH_NAMESPACE::run_mha_fwd_<T, 64, Causal>(p, s);
#endif
#if BW_FA_HDIM96
    case 96: return FLASH_NAMESPACE::run_mha_fwd_<T, 96, Causal>(p, s);
#endif
#if BW_FA_HDIM128
    case 128: return FLASH_NAMESPACE::run_mha_fwd_<T, 128, Causal>(p, s);
#endif
#if BW_FA_HDIM192
    case 192: return FLASH_NAMESPACE::run_mha_fwd_<T, 192, Causal>(p, s);
#endif
#if BW_FA_HDIM256
    case 256: return FLASH_NAMESPACE::run_mha_fwd_<T, 256, Causal>(p, s);
#endif
    default:
      STD_TORCH_CHECK(false, "blackwheel.flash_attn: head dim ", p.d, " not built");
  }
}

void check_qkv(const Tensor& t, const char* name, ScalarType dtype) {
  STD_TORCH_CHECK(t.is_cuda(), "blackwheel.flash_attn: ", name, " must be a CUDA tensor");
  STD_TORCH_CHECK(t.dim() == 4, "blackwheel.flash_attn: ", name,
                  " must be 4-D [batch, seqlen, heads, head_dim]");
  STD_TORCH_CHECK(t.scalar_type() == dtype, "blackwheel.flash_attn: q, k, v (and out) "
                  "must have the same dtype (float16 or bfloat16)");
  STD_TORCH_CHECK(t.stride(-1) == 1, "blackwheel.flash_attn: ", name,
                  " must have a contiguous last dimension");
}

int round_multiple(int x, int m) { return (x + m - 1) / m * m; }

}  // namespace

std::tuple<Tensor, Tensor> blackwheel_flash_attn_fwd(const Tensor& q, const Tensor& k,
                                                     const Tensor& v,
                                                     std::optional<Tensor> out_,
                                                     double softmax_scale, bool is_causal) {
  const ScalarType dtype = q.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Half || dtype == ScalarType::BFloat16,
                  "blackwheel.flash_attn: only float16 and bfloat16 are supported");
  check_qkv(q, "q", dtype);
  check_qkv(k, "k", dtype);
  check_qkv(v, "v", dtype);
  const torch::stable::accelerator::DeviceGuard device_guard(q.get_device_index());

  int device = 0, cc_major = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device);
  STD_TORCH_CHECK(cc_major >= 8, "blackwheel.flash_attn: FlashAttention-2 needs sm_80 or newer");

  const int batch_size = q.size(0);
  const int seqlen_q = q.size(1);
  const int num_heads = q.size(2);
  const int head_size = q.size(3);
  const int seqlen_k = k.size(1);
  const int num_heads_k = k.size(2);
  STD_TORCH_CHECK(batch_size > 0, "blackwheel.flash_attn: batch size must be positive");
  STD_TORCH_CHECK(head_dim_built(head_size), "blackwheel.flash_attn: head dim ", head_size,
                  " is not in this wheel (built: ", BW_FA_HEAD_DIMS,
                  "); rebuild with BLACKWHEEL_FA_HEAD_DIMS");
  STD_TORCH_CHECK(num_heads % num_heads_k == 0,
                  "blackwheel.flash_attn: heads of k/v must divide heads of q");
  STD_TORCH_CHECK(k.size(0) == batch_size && v.size(0) == batch_size && v.size(1) == seqlen_k &&
                      v.size(2) == num_heads_k && k.size(3) == head_size &&
                      v.size(3) == head_size,
                  "blackwheel.flash_attn: k and v must be [batch, seqlen_k, heads_k, head_dim] "
                  "matching q");

  Tensor out;
  if (out_.has_value()) {
    out = *out_;
    check_qkv(out, "out", dtype);
    STD_TORCH_CHECK(out.size(0) == batch_size && out.size(1) == seqlen_q &&
                        out.size(2) == num_heads && out.size(3) == head_size,
                    "blackwheel.flash_attn: out must have q's shape");
  } else {
    out = torch::stable::empty_like(q);
  }

  // FlashAttention: a single query row attends to every key, causal or not.
  if (seqlen_q == 1) is_causal = false;

  const int head_size_rounded = round_multiple(head_size, head_size <= 128 ? 32 : 64);
  const int seqlen_q_rounded = round_multiple(seqlen_q, 128);
  const int seqlen_k_rounded = round_multiple(seqlen_k, 128);

  Tensor softmax_lse = torch::stable::empty({batch_size, num_heads, seqlen_q},
                                            ScalarType::Float, std::nullopt, q.device());

  FLASH_NAMESPACE::Flash_fwd_params params = {};
  params.is_bf16 = dtype == ScalarType::BFloat16;
  params.q_ptr = q.data_ptr();
  params.k_ptr = k.data_ptr();
  params.v_ptr = v.data_ptr();
  params.q_row_stride = q.stride(-3);
  params.k_row_stride = k.stride(-3);
  params.v_row_stride = v.stride(-3);
  params.q_head_stride = q.stride(-2);
  params.k_head_stride = k.stride(-2);
  params.v_head_stride = v.stride(-2);
  params.o_ptr = out.data_ptr();
  params.o_row_stride = out.stride(-3);
  params.o_head_stride = out.stride(-2);
  params.q_batch_stride = q.stride(0);
  params.k_batch_stride = k.stride(0);
  params.v_batch_stride = v.stride(0);
  params.o_batch_stride = out.stride(0);
  params.softmax_lse_ptr = softmax_lse.data_ptr();
  params.b = batch_size;
  params.h = num_heads;
  params.h_k = num_heads_k;
  params.h_h_k_ratio = num_heads / num_heads_k;
  params.seqlen_q = seqlen_q;
  params.seqlen_k = seqlen_k;
  params.seqlen_q_rounded = seqlen_q_rounded;
  params.seqlen_k_rounded = seqlen_k_rounded;
  params.d = head_size;
  params.d_rounded = head_size_rounded;
  params.softcap = 0.0f;
  params.scale_softmax = static_cast<float>(softmax_scale);
  params.scale_softmax_log2 = static_cast<float>(softmax_scale * M_LOG2E);
  params.p_dropout = 1.f;  // keep probability: no dropout
  params.p_dropout_in_uint8_t = 255;
  params.rp_dropout = 1.f;
  params.scale_softmax_rp_dropout = params.scale_softmax;
  params.is_causal = is_causal;
  params.window_size_left = is_causal ? seqlen_k : -1;
  params.window_size_right = is_causal ? 0 : -1;
  params.is_seqlens_k_cumulative = true;
  params.num_splits = 1;
  params.alibi_slopes_ptr = nullptr;

  if (seqlen_k == 0) {
    torch::stable::zero_(out);
    torch::stable::fill_(softmax_lse, std::numeric_limits<double>::infinity());
    return {out, softmax_lse};
  }

  void* stream_ptr = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(q.get_device_index(), &stream_ptr));
  auto stream = reinterpret_cast<cudaStream_t>(stream_ptr);
  if (params.is_bf16) {
    if (is_causal) run_for_dtype<cutlass::bfloat16_t, true>(params, stream);
    else run_for_dtype<cutlass::bfloat16_t, false>(params, stream);
  } else {
    if (is_causal) run_for_dtype<cutlass::half_t, true>(params, stream);
    else run_for_dtype<cutlass::half_t, false>(params, stream);
  }
  return {out, softmax_lse};
}

STABLE_TORCH_LIBRARY_FRAGMENT(blackwheel, m) {
  m.def(
      "flash_attn_fwd(Tensor q, Tensor k, Tensor v, Tensor? out, float softmax_scale, "
      "bool is_causal) -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(blackwheel, CUDA, m) {
  m.impl("flash_attn_fwd", TORCH_BOX(&blackwheel_flash_attn_fwd));
}
