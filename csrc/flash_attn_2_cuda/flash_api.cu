// blackwheel's flash_attn_2_cuda: the compiled half of the drop-in `flash_attn`
// wheel, on the LibTorch stable ABI (TORCH_TARGET_VERSION 2.11).
//
// Upstream's csrc/flash_attn/flash_api.cpp does three things per entry point:
// tensor bookkeeping (layout swaps, allocations, GQA reductions, padding), RNG
// (at::CUDAGeneratorImpl) and filling Flash_fwd_params / Flash_bwd_params for
// the kernel launchers. The stable ABI has no generator and few tensor ops, so
// the bookkeeping and the RNG live in Python (python/flash_attn_2_cuda/, a line-
// by-line port of upstream's decisions), and this file keeps the third part:
// two ops that take every tensor already allocated and every decision already
// made, fill the params exactly as upstream's set_params_fprop/set_params_dgrad
// do, and launch. Both are registered as torch.ops.flash_attn_2_cuda.*.
#include "fa2_launch.h"

// Forward for fwd, varlen_fwd and fwd_kvcache. The caller (python/flash_attn_2_cuda)
// has made upstream's decisions: layouts (seqlenq_ngroups_swapped), window sizes,
// num_splits and the split accumulators, the Philox seed/offset from torch's
// generator, and which kernel (split for kvcache append / cache_batch_idx / paged).
void mha_fwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor softmax_lse, OptTensor p,
             Tensor rng_state, OptTensor cu_seqlens_q, OptTensor cu_seqlens_k,
             OptTensor seqused_k, OptTensor leftpad_k, OptTensor block_table,
             OptTensor alibi_slopes, OptTensor k_new, OptTensor v_new, OptTensor rotary_cos,
             OptTensor rotary_sin, OptTensor cache_batch_idx, OptTensor softmax_lse_accum,
             OptTensor out_accum, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
             int64_t num_heads, int64_t num_heads_k, int64_t head_size, int64_t total_q,
             double p_dropout, double softmax_scale, int64_t window_size_left,
             int64_t window_size_right, double softcap, bool seqlenq_ngroups_swapped,
             bool unpadded_lse, bool is_seqlens_k_cumulative, bool is_rotary_interleaved,
             int64_t num_splits, bool force_split_kernel, int64_t philox_seed,
             int64_t philox_offset) {
  const torch::stable::accelerator::DeviceGuard guard(q.get_device_index());
  check_device(q);
  const ScalarType dtype = q.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Half || dtype == ScalarType::BFloat16,
                  "FlashAttention only support fp16 and bf16 data type");
  FLASH_NAMESPACE::Flash_fwd_params params;
  set_params_fprop(params, batch, seqlen_q, seqlen_k, num_heads, num_heads_k, head_size, q, k, v,
                   out, ptr_or_null(cu_seqlens_q), ptr_or_null(cu_seqlens_k),
                   ptr_or_null(seqused_k), ptr_or_null(p), softmax_lse.data_ptr(), p_dropout,
                   softmax_scale, window_size_left, window_size_right, softcap,
                   seqlenq_ngroups_swapped, unpadded_lse);
  params.total_q = total_q;
  params.is_seqlens_k_cumulative = is_seqlens_k_cumulative;
  params.leftpad_k = static_cast<int*>(ptr_or_null(leftpad_k));
  if (block_table.has_value()) {
    params.block_table = static_cast<int*>(block_table->data_ptr());
    params.block_table_batch_stride = block_table->stride(0);
    params.k_batch_stride = k.stride(0);
    params.v_batch_stride = v.stride(0);
    params.page_block_size = k.size(1);
    check_page_block_size(params.page_block_size, head_size, k_new.has_value());
  } else {
    params.page_block_size = 1;
  }
  if (k_new.has_value()) {
    STD_TORCH_CHECK(v_new.has_value(), "If key is supplied, value must also be passed in");
    params.seqlen_knew = k_new->size(1);
    params.knew_ptr = k_new->data_ptr();
    params.vnew_ptr = v_new->data_ptr();
    params.knew_batch_stride = k_new->stride(0);
    params.vnew_batch_stride = v_new->stride(0);
    params.knew_row_stride = k_new->stride(-3);
    params.vnew_row_stride = v_new->stride(-3);
    params.knew_head_stride = k_new->stride(-2);
    params.vnew_head_stride = v_new->stride(-2);
  }
  if (rotary_cos.has_value()) {
    STD_TORCH_CHECK(rotary_sin.has_value(), "If rotary cos is provided, rotary sin must also be provided");
    params.rotary_dim = rotary_cos->size(1) * 2;
    params.rotary_cos_ptr = rotary_cos->data_ptr();
    params.rotary_sin_ptr = rotary_sin->data_ptr();
    params.is_rotary_interleaved = is_rotary_interleaved;
  } else {
    params.rotary_dim = 0;
  }
  params.cache_batch_idx = static_cast<int*>(ptr_or_null(cache_batch_idx));
  params.num_splits = num_splits;
  params.softmax_lseaccum_ptr = ptr_or_null(softmax_lse_accum);
  params.oaccum_ptr = ptr_or_null(out_accum);
  STD_TORCH_CHECK(num_splits <= 1 || (softmax_lse_accum.has_value() && out_accum.has_value()),
                  "flash_attn: num_splits > 1 needs the split accumulators");
  params.rng_state = reinterpret_cast<uint64_t*>(rng_state.data_ptr());
  params.philox_args.seed = static_cast<uint64_t>(philox_seed);
  params.philox_args.offset = static_cast<uint64_t>(philox_offset);
  set_params_alibi(params, alibi_slopes);

  run_fwd(params, current_stream(q), params.num_splits > 1 || force_split_kernel);
}

// Backward for bwd and varlen_bwd. dk/dv are the per-query-head gradients
// (the caller sums them over the groups for MQA/GQA, as upstream does).
void mha_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor softmax_lse,
             Tensor dq, Tensor dk, Tensor dv, Tensor dq_accum, Tensor softmax_d,
             OptTensor cu_seqlens_q, OptTensor cu_seqlens_k, OptTensor alibi_slopes,
             Tensor rng_state, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
             int64_t num_heads, int64_t num_heads_k, int64_t head_size, int64_t total_q,
             double p_dropout, double softmax_scale, int64_t window_size_left,
             int64_t window_size_right, double softcap, bool deterministic, bool unpadded_lse) {
#if !BW_FA_BACKWARD
  STD_TORCH_CHECK(false, "flash_attn: this wheel was built without the backward kernels "
                  "(built directions: ", BW_FA_DIRECTIONS, ")", kRebuild);
#else
  const torch::stable::accelerator::DeviceGuard guard(q.get_device_index());
  check_device(q);
  FLASH_NAMESPACE::Flash_bwd_params params;
  set_params_fprop(params, batch, seqlen_q, seqlen_k, num_heads, num_heads_k, head_size, q, k, v,
                   out, ptr_or_null(cu_seqlens_q), ptr_or_null(cu_seqlens_k), nullptr, nullptr,
                   softmax_lse.data_ptr(), p_dropout, softmax_scale, window_size_left,
                   window_size_right, softcap, false, unpadded_lse);
  // upstream's set_params_dgrad
  params.do_ptr = dout.data_ptr();
  params.do_row_stride = dout.stride(-3);
  params.do_head_stride = dout.stride(-2);
  params.dq_ptr = dq.data_ptr();
  params.dk_ptr = dk.data_ptr();
  params.dv_ptr = dv.data_ptr();
  params.dq_row_stride = dq.stride(-3);
  params.dk_row_stride = dk.stride(-3);
  params.dv_row_stride = dv.stride(-3);
  params.dq_head_stride = dq.stride(-2);
  params.dk_head_stride = dk.stride(-2);
  params.dv_head_stride = dv.stride(-2);
  if (!cu_seqlens_q.has_value()) {
    params.do_batch_stride = dout.stride(0);
    params.dq_batch_stride = dq.stride(0);
    params.dk_batch_stride = dk.stride(0);
    params.dv_batch_stride = dv.stride(0);
  }
  params.dq_accum_ptr = dq_accum.data_ptr();
  params.dk_accum_ptr = nullptr;
  params.dv_accum_ptr = nullptr;
  params.dsoftmax_sum = softmax_d.data_ptr();
  params.deterministic = deterministic;
  params.dq_accum_split_stride = deterministic ? dq_accum.stride(0) : 0;
  params.total_q = total_q;
  params.rng_state = reinterpret_cast<uint64_t*>(rng_state.data_ptr());
  set_params_alibi(params, alibi_slopes);

  const cudaStream_t stream = current_stream(q);
  if (params.is_bf16) {
#if BW_FA_BF16
    run_bwd_dtype<cutlass::bfloat16_t>(params, stream);
#else
    STD_TORCH_CHECK(false, "flash_attn: this wheel has no bfloat16 kernels", kRebuild);
#endif
  } else {
#if BW_FA_FP16
    run_bwd_dtype<cutlass::half_t>(params, stream);
#else
    STD_TORCH_CHECK(false, "flash_attn: this wheel has no float16 kernels", kRebuild);
#endif
  }
#endif
}

STABLE_TORCH_LIBRARY(flash_attn_2_cuda, m) {
  m.def(
      "mha_fwd(Tensor q, Tensor(a!) k, Tensor(b!) v, Tensor(c!) out, Tensor(d!) softmax_lse, "
      "Tensor(e!)? p, Tensor(f!) rng_state, Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, "
      "Tensor? seqused_k, Tensor? leftpad_k, Tensor? block_table, Tensor? alibi_slopes, "
      "Tensor? k_new, Tensor? v_new, Tensor? rotary_cos, Tensor? rotary_sin, "
      "Tensor? cache_batch_idx, Tensor(g!)? softmax_lse_accum, Tensor(h!)? out_accum, "
      "int batch, int seqlen_q, int seqlen_k, int num_heads, int num_heads_k, int head_size, "
      "int total_q, float p_dropout, float softmax_scale, int window_size_left, "
      "int window_size_right, float softcap, bool seqlenq_ngroups_swapped, bool unpadded_lse, "
      "bool is_seqlens_k_cumulative, bool is_rotary_interleaved, int num_splits, "
      "bool force_split_kernel, int philox_seed, int philox_offset) -> ()");
  m.def(
      "mha_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor softmax_lse, "
      "Tensor(a!) dq, Tensor(b!) dk, Tensor(c!) dv, Tensor(d!) dq_accum, Tensor(e!) softmax_d, "
      "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, Tensor? alibi_slopes, Tensor rng_state, "
      "int batch, int seqlen_q, int seqlen_k, int num_heads, int num_heads_k, int head_size, "
      "int total_q, float p_dropout, float softmax_scale, int window_size_left, "
      "int window_size_right, float softcap, bool deterministic, bool unpadded_lse) -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(flash_attn_2_cuda, CUDA, m) {
  m.impl("mha_fwd", TORCH_BOX(&mha_fwd));
  m.impl("mha_bwd", TORCH_BOX(&mha_bwd));
}
