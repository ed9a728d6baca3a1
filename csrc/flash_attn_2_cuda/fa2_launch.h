// The one FlashAttention-2 front end of this repository: filling Flash_fwd_params /
// Flash_bwd_params as upstream's flash_api.cpp does, and dispatching to the kernels
// compiled into this library (head dims / dtypes / directions of the plan). Used by
// flash_api.cu (torch.ops.flash_attn_2_cuda, the flash_attn product) and by
// vllm_fa2_api.cu (torch.ops._vllm_fa2_C, the vllm product's vllm_flash_attn).
// Header-only and internal (anonymous namespace): each library has its own copy of
// these few functions; the kernels are the same TUs of the pinned flash-attn sdist.
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/shim_utils.h>

#include "namespace_config.h"
#include "flash.h"

using torch::stable::Tensor;
using torch::headeronly::ScalarType;
using OptTensor = std::optional<Tensor>;

namespace {

constexpr const char* kRebuild =
    "; rebuild the wheel with BLACKWHEEL_FA_HEAD_DIMS / BLACKWHEEL_FA_DIRECTIONS / "
    "BLACKWHEEL_FA_DTYPES "
    "(see `python -m blackwheel_factory wheel --help`)";

void* ptr_or_null(const OptTensor& t) { return t.has_value() ? t->data_ptr() : nullptr; }

cudaStream_t current_stream(const Tensor& t) {
  void* s = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &s));
  return reinterpret_cast<cudaStream_t>(s);
}

void check_device(const Tensor& q) {
  STD_TORCH_CHECK(q.is_cuda(), "flash_attn: tensors must be on a CUDA device");
  int device = 0, cc_major = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device);
  STD_TORCH_CHECK(cc_major >= 8, "FlashAttention only supports Ampere GPUs or newer.");
}

// Upstream's set_params_fprop (flash_api.cpp), field for field.
// upstream's head-dim rounding (flash_api.cpp): the kernels' d_rounded, and the split
// accumulators' row length
int64_t head_dim_rounded(int64_t d) {
  const int64_t m = d <= 128 ? 32 : 64;
  return (d + m - 1) / m * m;
}

void set_params_fprop(FLASH_NAMESPACE::Flash_fwd_params& params, int64_t b, int64_t seqlen_q,
                      int64_t seqlen_k, int64_t h, int64_t h_k, int64_t d, const Tensor& q,
                      const Tensor& k, const Tensor& v, const Tensor& out, void* cu_seqlens_q_d,
                      void* cu_seqlens_k_d, void* seqused_k, void* p_d, void* softmax_lse_d,
                      double p_dropout, double softmax_scale, int64_t window_size_left,
                      int64_t window_size_right, double softcap, bool seqlenq_ngroups_swapped,
                      bool unpadded_lse) {
  auto round_multiple = [](int64_t x, int64_t m) { return (x + m - 1) / m * m; };
  params = {};
  params.is_bf16 = q.scalar_type() == ScalarType::BFloat16;
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
  if (cu_seqlens_q_d == nullptr) {
    params.q_batch_stride = q.stride(0);
    params.k_batch_stride = k.stride(0);
    params.v_batch_stride = v.stride(0);
    params.o_batch_stride = out.stride(0);
    if (seqlenq_ngroups_swapped) {
      params.q_batch_stride *= seqlen_q;
      params.o_batch_stride *= seqlen_q;
    }
  }
  params.cu_seqlens_q = static_cast<int*>(cu_seqlens_q_d);
  params.cu_seqlens_k = static_cast<int*>(cu_seqlens_k_d);
  params.seqused_k = static_cast<int*>(seqused_k);
  params.p_ptr = p_d;
  params.softmax_lse_ptr = softmax_lse_d;
  params.b = b;
  params.h = h;
  params.h_k = h_k;
  params.h_h_k_ratio = h / h_k;
  params.seqlen_q = seqlen_q;
  params.seqlen_k = seqlen_k;
  params.seqlen_q_rounded = round_multiple(seqlen_q, 128);
  params.seqlen_k_rounded = round_multiple(seqlen_k, 128);
  params.d = d;
  params.d_rounded = head_dim_rounded(d);
  if (softcap > 0.0) {
    params.softcap = softmax_scale / softcap;
    params.scale_softmax = softcap;
    params.scale_softmax_log2 = softcap * M_LOG2E;
  } else {
    params.softcap = 0.0;
    params.scale_softmax = softmax_scale;
    params.scale_softmax_log2 = softmax_scale * M_LOG2E;
  }
  // probability of keeping an element
  params.p_dropout = 1.f - p_dropout;
  params.p_dropout_in_uint8_t = uint8_t(std::floor(params.p_dropout * 255.0));
  params.rp_dropout = 1.f / params.p_dropout;
  params.scale_softmax_rp_dropout = params.rp_dropout * params.scale_softmax;
  STD_TORCH_CHECK(p_dropout < 1.f, "flash_attn: dropout_p must be < 1");
  // causal is window_size_right == 0 and window_size_left < 0
  params.is_causal = window_size_left < 0 && window_size_right == 0;
  if (window_size_left < 0 && window_size_right >= 0) window_size_left = seqlen_k;
  if (window_size_left >= 0 && window_size_right < 0) window_size_right = seqlen_k;
  params.window_size_left = window_size_left;
  params.window_size_right = window_size_right;
  params.is_seqlens_k_cumulative = true;
  params.unpadded_lse = unpadded_lse;
  params.seqlenq_ngroups_swapped = seqlenq_ngroups_swapped;
}

void set_params_alibi(FLASH_NAMESPACE::Flash_fwd_params& params, const OptTensor& alibi) {
  params.alibi_slopes_ptr = ptr_or_null(alibi);
  params.alibi_slopes_batch_stride = alibi.has_value() && alibi->dim() == 2 ? alibi->stride(0) : 0;
}

bool head_dim_built(int64_t d) {
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

// The kernel's head dim: upstream's HEADDIM_SWITCH rounds up to the next built tile.
int64_t kernel_head_dim(int64_t d) {
  for (int64_t k : {32, 64, 96, 128, 192, 256}) {
    if (d <= k) {
      STD_TORCH_CHECK(head_dim_built(k), "flash_attn: head dim ", d, " needs the hdim", k,
                      " kernels, which this wheel does not have (built: ", BW_FA_HEAD_DIMS, ")",
                      kRebuild);
      return k;
    }
  }
  STD_TORCH_CHECK(false, "FlashAttention only supports head dimension at most 256");
  return 0;
}

template <typename T, int D, bool Causal>
void launch_fwd(FLASH_NAMESPACE::Flash_fwd_params& p, cudaStream_t s, bool split) {
  if (split) FLASH_NAMESPACE::run_mha_fwd_splitkv_dispatch<T, D, Causal>(p, s);
  else FLASH_NAMESPACE::run_mha_fwd_<T, D, Causal>(p, s);
}

template <typename T, int D>
void launch_fwd_causal(FLASH_NAMESPACE::Flash_fwd_params& p, cudaStream_t s, bool split) {
  if (p.is_causal) launch_fwd<T, D, true>(p, s, split);
  else launch_fwd<T, D, false>(p, s, split);
}

template <typename T>
void run_fwd_dtype(FLASH_NAMESPACE::Flash_fwd_params& p, cudaStream_t s, bool split) {
  switch (kernel_head_dim(p.d)) {
#if BW_FA_HDIM32
    case 32: return launch_fwd_causal<T, 32>(p, s, split);
#endif
#if BW_FA_HDIM64
    case 64: return launch_fwd_causal<T, 64>(p, s, split);
#endif
#if BW_FA_HDIM96
    case 96: return launch_fwd_causal<T, 96>(p, s, split);
#endif
#if BW_FA_HDIM128
    case 128: return launch_fwd_causal<T, 128>(p, s, split);
#endif
#if BW_FA_HDIM192
    case 192: return launch_fwd_causal<T, 192>(p, s, split);
#endif
#if BW_FA_HDIM256
    case 256: return launch_fwd_causal<T, 256>(p, s, split);
#endif
    default: break;
  }
}

#if BW_FA_BACKWARD
template <typename T, int D>
void launch_bwd_causal(FLASH_NAMESPACE::Flash_bwd_params& p, cudaStream_t s) {
  if (p.is_causal) FLASH_NAMESPACE::run_mha_bwd_<T, D, true>(p, s);
  else FLASH_NAMESPACE::run_mha_bwd_<T, D, false>(p, s);
}

template <typename T>
void run_bwd_dtype(FLASH_NAMESPACE::Flash_bwd_params& p, cudaStream_t s) {
  switch (kernel_head_dim(p.d)) {
#if BW_FA_HDIM32
    case 32: return launch_bwd_causal<T, 32>(p, s);
#endif
#if BW_FA_HDIM64
    case 64: return launch_bwd_causal<T, 64>(p, s);
#endif
#if BW_FA_HDIM96
    case 96: return launch_bwd_causal<T, 96>(p, s);
#endif
#if BW_FA_HDIM128
    case 128: return launch_bwd_causal<T, 128>(p, s);
#endif
#if BW_FA_HDIM192
    case 192: return launch_bwd_causal<T, 192>(p, s);
#endif
#if BW_FA_HDIM256
    case 256: return launch_bwd_causal<T, 256>(p, s);
#endif
    default: break;
  }
}
#endif


// The split-KV kernel's kBlockN (run_mha_fwd_splitkv_dispatch), as _decide.splitkv_block_n.
inline int64_t splitkv_block_n(int64_t head_size) {
  return head_size <= 64 ? 256 : (head_size <= 128 ? 128 : 64);
}

// Paged KV: page (block) sizes the kernels take (patch 0004: any size; the front ends
// accept vLLM's contract, multiples of 16). The kernel's append of K/V into the cache walks
// one pointer per tile, so it needs pages that are multiples of kBlockN (the Python front
// end appends into smaller pages itself and calls without k_new, unless rotary is asked).
inline void check_page_block_size(int64_t page_block_size, int64_t head_size, bool appends) {
  STD_TORCH_CHECK(page_block_size > 0 && page_block_size % 16 == 0,
                  "Paged KV cache block size must be a multiple of 16, got ", page_block_size);
  STD_TORCH_CHECK(!appends || page_block_size % splitkv_block_n(head_size) == 0,
                  "flash_attn: appending k/v with rotary_cos/rotary_sin to a paged KV cache needs "
                  "a block size that is a multiple of ", splitkv_block_n(head_size), " for head dim ",
                  head_size, " (got ", page_block_size, "); apply the rotary embedding to q and k "
                  "first and append without rotary_cos/rotary_sin");
}

// Forward launch on the current stream of q's device, for the dtype of params.
inline void run_fwd(FLASH_NAMESPACE::Flash_fwd_params& params, cudaStream_t stream, bool split) {
  if (params.is_bf16) {
#if BW_FA_BF16
    run_fwd_dtype<cutlass::bfloat16_t>(params, stream, split);
#else
    STD_TORCH_CHECK(false, "flash_attn: this wheel has no bfloat16 kernels", kRebuild);
#endif
  } else {
#if BW_FA_FP16
    run_fwd_dtype<cutlass::half_t>(params, stream, split);
#else
    STD_TORCH_CHECK(false, "flash_attn: this wheel has no float16 kernels", kRebuild);
#endif
  }
}

}  // namespace
