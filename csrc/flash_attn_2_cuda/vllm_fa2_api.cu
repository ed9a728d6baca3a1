// torch.ops._vllm_fa2_C: the op library vLLM's vllm/vllm_flash_attn/flash_attn_interface.py
// calls for FA2 (fa_version=2, what vLLM's FLASH_ATTN backend runs on SM_120 and on every
// GPU without FA3/FA4), on the LibTorch stable ABI, over the same FlashAttention-2 kernels
// and the same parameter filling and launch code (fa2_launch.h) as the flash_attn product.
//
// vLLM calls varlen_fwd once per attention layer per step, eagerly, outside its piecewise
// CUDA graphs, so everything upstream's mha_varlen_fwd decides is decided here in C++
// (no Python between vLLM and the launch): checks, the GQA decode swap (done with strides,
// no copy of q or out), window clamping, the split-KV heuristic for decode with paged KV,
// one allocation per call for the LSE and the split accumulators (the LSE is a view of it),
// the shared-memory attribute set once per kernel (flash-attn patch 0006).
//
// Differences from vLLM's own FA2 build, on purpose:
//  - dropout (p_dropout > 0, return_softmax) is refused: torch's CUDA generator is not part
//    of the 2.11 stable ABI, and vLLM never passes dropout (inference);
//  - fwd_sparse / varlen_fwd_sparse (vertical-slash block-sparse attention, used by no
//    model backend of vLLM 0.33) are not registered: flash-attn 2.8.3 has no such kernels;
//    vLLM's sparse_attn_func / sparse_attn_varlen_func raise NotImplementedError naming
//    the feature (patches/vllm-0.33.0/0006).
// What FA2 cannot do at all (attention sinks s_aux, fp8 descale, scheduler_metadata,
// num_splits > 1) vLLM's own Python refuses before calling (flash_attn_interface.py,
// fa_utils.flash_attn_supports_sinks), so its backend selection picks another backend.
#include <algorithm>
#include <array>
#include <initializer_list>
#include <optional>
#include <tuple>

#include <torch/csrc/stable/ops.h>

#include "fa2_launch.h"

namespace {

constexpr const char* kWho = "vllm_flash_attn (FA2, blackwheel)";

int num_sms(int device) {
  static std::array<int, 64> cache{};   // per device; 0 = not asked yet
  if (device >= 0 && device < 64 && cache[device] > 0) return cache[device];
  int n = 0;
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
  if (device >= 0 && device < 64) cache[device] = n;
  return n;
}

int cc_major(int device) {
  static std::array<int, 64> cache{};
  if (device >= 0 && device < 64 && cache[device] > 0) return cache[device];
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (device >= 0 && device < 64) cache[device] = major;
  return major;
}

// Upstream's num_splits_heuristic (flash_api.cpp), in float as upstream computes it;
// python/flash_attn_2_cuda/_decide.py has the same function (unit-tested).
int num_splits_heuristic(int batch_nheads_mblocks, int num_SMs, int num_n_blocks, int max_splits) {
  if (batch_nheads_mblocks >= 0.8f * num_SMs) return 1;
  max_splits = std::min({max_splits, num_SMs, num_n_blocks});
  float max_efficiency = 0.f;
  std::array<float, 129> efficiency{};
  auto ceildiv = [](int a, int b) { return (a + b - 1) / b; };
  auto is_split_eligible = [&](int s) {
    return s == 1 || ceildiv(num_n_blocks, s) != ceildiv(num_n_blocks, s - 1);
  };
  for (int s = 1; s <= max_splits; s++) {
    if (!is_split_eligible(s)) continue;
    float n_waves = float(batch_nheads_mblocks * s) / num_SMs;
    float eff = n_waves / std::ceil(n_waves);
    if (eff > max_efficiency) max_efficiency = eff;
    efficiency[s] = eff;
  }
  for (int s = 1; s <= max_splits; s++) {
    if (is_split_eligible(s) && efficiency[s] >= 0.85f * max_efficiency) return s;
  }
  return 1;
}

// A float32 CUDA buffer of n elements from torch's caching allocator, through the shim's
// empty_strided (torch::stable::new_empty dispatches aten::new_empty, then aten::empty: two
// dispatcher round trips per call on vLLM's hot path).
Tensor empty_f32(int64_t n, int device) {
  const int64_t stride = 1;
  AtenTensorHandle h = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(1, &n, &stride, aoti_torch_dtype_float32(),
                                                  aoti_torch_device_type_cuda(), device, &h));
  return Tensor(h);
}

// A view of base's storage (sizes and strides in elements, offset in elements), made by the
// shim directly: no dispatcher call.
Tensor view_of(const Tensor& base, std::initializer_list<int64_t> sizes,
               std::initializer_list<int64_t> strides, int64_t offset) {
  AtenTensorHandle h = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch__reinterpret_tensor(base.get(), int64_t(sizes.size()),
                                                        sizes.begin(), strides.begin(), offset, &h));
  return Tensor(h);
}

int64_t pad64(int64_t n) { return (n + 63) / 64 * 64; }   // floats: 256-byte aligned regions

void check_cuda(const Tensor& t, const char* name) {
  STD_TORCH_CHECK(t.is_cuda(), kWho, ": ", name, " must be a CUDA tensor");
}

void check_int32(const Tensor& t, const char* name, int64_t n) {
  check_cuda(t, name);
  STD_TORCH_CHECK(t.scalar_type() == ScalarType::Int, kWho, ": ", name, " must have dtype int32");
  STD_TORCH_CHECK(t.is_contiguous(), kWho, ": ", name, " must be contiguous");
  STD_TORCH_CHECK(t.dim() == 1 && t.size(0) == n, kWho, ": ", name, " must have shape (", n,
                  "), got ", t.dim(), " dims, size(0) ", t.dim() > 0 ? t.size(0) : -1);
}

void check_shape4(const Tensor& t, const char* name, int64_t a, int64_t b, int64_t c, int64_t d) {
  STD_TORCH_CHECK(t.dim() == 4 && t.size(0) == a && t.size(1) == b && t.size(2) == c && t.size(3) == d,
                  kWho, ": ", name, " must have shape (", a, ", ", b, ", ", c, ", ", d, ")");
}

void check_shape3(const Tensor& t, const char* name, int64_t a, int64_t b, int64_t c) {
  STD_TORCH_CHECK(t.dim() == 3 && t.size(0) == a && t.size(1) == b && t.size(2) == c,
                  kWho, ": ", name, " must have shape (", a, ", ", b, ", ", c, ")");
}

}  // namespace

// vLLM's mha_varlen_fwd: returns (out, softmax_lse); softmax_lse is (num_heads, total_q).
std::tuple<Tensor, Tensor> varlen_fwd(
    Tensor q, Tensor k, Tensor v, OptTensor out_, Tensor cu_seqlens_q, Tensor cu_seqlens_k,
    OptTensor seqused_k, OptTensor leftpad_k, OptTensor block_table, OptTensor alibi_slopes,
    int64_t max_seqlen_q, int64_t max_seqlen_k, double p_dropout, double softmax_scale,
    bool zero_tensors, bool is_causal, int64_t window_size_left, int64_t window_size_right,
    double softcap, bool return_softmax, int64_t num_splits) {
  check_cuda(q, "q");
  const int device = q.get_device_index();
  // the launches go to the current device: switch only when q is elsewhere (the guard's
  // create/destroy through the shim is not free, and vLLM calls with the current device)
  int current = -1;
  cudaGetDevice(&current);
  std::optional<torch::stable::accelerator::DeviceGuard> guard;
  if (current != device) guard.emplace(device);
  STD_TORCH_CHECK(cc_major(device) >= 8, "FlashAttention only supports Ampere GPUs or newer.");
  const ScalarType dtype = q.scalar_type();
  STD_TORCH_CHECK(dtype == ScalarType::Half || dtype == ScalarType::BFloat16,
                  "FlashAttention only support fp16 and bf16 data type");
  STD_TORCH_CHECK(k.scalar_type() == dtype, "query and key must have the same dtype");
  STD_TORCH_CHECK(v.scalar_type() == dtype, "query and value must have the same dtype");
  check_cuda(k, "k");
  check_cuda(v, "v");
  STD_TORCH_CHECK(q.stride(-1) == 1 && k.stride(-1) == 1 && v.stride(-1) == 1,
                  "Input tensor must have contiguous last dimension");
  STD_TORCH_CHECK(p_dropout == 0.0 && !return_softmax, kWho,
                  ": dropout (and return_softmax) is not supported by this inference op; "
                  "use the flash_attn package for training");
  STD_TORCH_CHECK(num_splits >= 0 && num_splits <= 128, kWho, ": num_splits must be in [0, 128]");
  STD_TORCH_CHECK(q.dim() == 3, kWho, ": q must be (total_q, num_heads, head_size)");
  check_cuda(cu_seqlens_q, "cu_seqlens_q");
  check_cuda(cu_seqlens_k, "cu_seqlens_k");
  STD_TORCH_CHECK(cu_seqlens_q.scalar_type() == ScalarType::Int, "cu_seqlens_q must have dtype int32");
  STD_TORCH_CHECK(cu_seqlens_k.scalar_type() == ScalarType::Int, "cu_seqlens_k must have dtype int32");
  STD_TORCH_CHECK(cu_seqlens_q.is_contiguous(), "cu_seqlens_q must be contiguous");
  STD_TORCH_CHECK(cu_seqlens_k.is_contiguous(), "cu_seqlens_k must be contiguous");

  const bool paged_kv = block_table.has_value();
  const int64_t batch_size = cu_seqlens_q.numel() - 1;
  const int64_t total_q = q.size(0);
  const int64_t num_heads_og = q.size(1);
  const int64_t head_size = q.size(2);
  const int64_t num_heads_k = paged_kv ? k.size(2) : k.size(1);
  STD_TORCH_CHECK(batch_size > 0, "batch size must be positive");
  STD_TORCH_CHECK(head_size <= 256, "FlashAttention forward only supports head dimension at most 256");
  STD_TORCH_CHECK(head_size % 8 == 0, "query, key, value, and out_ must have a head_size that is a multiple of 8");
  STD_TORCH_CHECK(num_heads_k > 0 && num_heads_og % num_heads_k == 0,
                  "Number of heads in key/value must divide number of heads in query");
  STD_TORCH_CHECK(cu_seqlens_q.numel() == batch_size + 1 && cu_seqlens_k.numel() == batch_size + 1,
                  "cu_seqlens_q and cu_seqlens_k must have shape (batch_size + 1)");
  if (softcap > 0.0) STD_TORCH_CHECK(p_dropout == 0.0, "Softcapping does not support dropout for now");

  if (paged_kv) {
    const Tensor& bt = *block_table;
    check_cuda(bt, "block_table");
    STD_TORCH_CHECK(bt.scalar_type() == ScalarType::Int, "block_table must have dtype torch.int32");
    STD_TORCH_CHECK(bt.stride(-1) == 1, "block_table must have contiguous last dimension");
    STD_TORCH_CHECK(bt.dim() == 2 && bt.size(0) == batch_size,
                    "block_table must have shape (batch_size, max_num_blocks_per_seq)");
    STD_TORCH_CHECK(k.dim() == 4, kWho, ": a paged k must be (num_blocks, block_size, num_heads_k, head_size)");
    check_page_block_size(k.size(1), head_size, /*appends=*/false);
    check_shape4(k, "k", k.size(0), k.size(1), num_heads_k, head_size);
    check_shape4(v, "v", k.size(0), k.size(1), num_heads_k, head_size);
    STD_TORCH_CHECK(!leftpad_k.has_value(),
                    "We don't support Paged KV and leftpad_k running at the same time yet");
  } else {
    check_shape3(k, "k", k.size(0), num_heads_k, head_size);
    check_shape3(v, "v", k.size(0), num_heads_k, head_size);
  }
  if (seqused_k.has_value()) check_int32(*seqused_k, "seqused_k", batch_size);
  if (leftpad_k.has_value()) check_int32(*leftpad_k, "leftpad_k", batch_size);
  if (alibi_slopes.has_value()) {
    const Tensor& a = *alibi_slopes;
    check_cuda(a, "alibi_slopes");
    STD_TORCH_CHECK(a.scalar_type() == ScalarType::Float, "ALiBi slopes must have dtype fp32");
    STD_TORCH_CHECK(a.stride(-1) == 1, "ALiBi slopes tensor must have contiguous last dimension");
    STD_TORCH_CHECK((a.dim() == 1 && a.size(0) == num_heads_og) ||
                    (a.dim() == 2 && a.size(0) == batch_size && a.size(1) == num_heads_og),
                    "ALiBi slopes must have shape (num_heads) or (batch_size, num_heads)");
  }
  kernel_head_dim(head_size);   // refuses a head dim this library was built without

  if (max_seqlen_q == 1 && !alibi_slopes.has_value()) is_causal = false;
  if (is_causal) window_size_right = 0;
  // A decode-only batch (one query per sequence) runs in batch mode (no cu_seqlens_q), the
  // layout the split-KV combine kernel writes. With GQA it also folds the query heads of a
  // KV head into the sequence axis (upstream's seqlenq_ngroups_swapped), with strides
  // instead of upstream's reshape copies of q and out.
  const bool decode_batch = max_seqlen_q == 1 && total_q == batch_size;
  const bool swapped = decode_batch && num_heads_og > num_heads_k && window_size_left < 0 &&
                       window_size_right < 0 && head_size % 8 == 0 && !alibi_slopes.has_value();
  const int64_t ngroups = num_heads_og / num_heads_k;
  const int64_t seqlen_q = swapped ? ngroups : max_seqlen_q;
  const int64_t num_heads = swapped ? num_heads_k : num_heads_og;
  if (window_size_left >= max_seqlen_k) window_size_left = -1;
  if (window_size_right >= max_seqlen_k) window_size_right = -1;

  Tensor out = out_.has_value() ? *out_ : torch::stable::empty_like(q);
  if (out_.has_value()) {
    check_cuda(out, "out");
    STD_TORCH_CHECK(out.scalar_type() == dtype, "Output must have the same dtype as inputs");
    STD_TORCH_CHECK(out.stride(-1) == 1, "Output tensor must have contiguous last dimension");
    check_shape3(out, "out", total_q, num_heads_og, head_size);
  }
  // Split-KV (the split kernel: every paged call and decode): num_splits 0 = upstream's
  // heuristic, 1 = one split. More than one split only for a decode-only batch: the combine
  // kernel writes batch-mode layouts, not varlen ones (upstream splits only its swapped decode).
  int64_t n_splits = 1;
  if (decode_batch && max_seqlen_k > 0) {
    n_splits = num_splits;
    if (n_splits < 1) {
      const int64_t block_n = splitkv_block_n(head_size);
      const int64_t n_blocks = (max_seqlen_k + block_n - 1) / block_n;
      const int64_t m_blocks = (seqlen_q + 63) / 64;
      n_splits = num_splits_heuristic(int(batch_size * num_heads * m_blocks), num_sms(device) * 2,
                                      int(n_blocks), 128);
    }
  }
  // The split kernel run as one split (paged KV) writes the swapped problem's LSE in its
  // varlen layout, (h_k, b, ngroups), where every other path writes (h_k, ngroups, b) (upstream's
  // get_lse_tile): it writes a scratch, transposed into softmax_lse after the kernel.
  const bool lse_transposed = swapped && paged_kv && n_splits == 1;
  // One allocation per call: the LSE, then the LSE scratch or the split accumulators
  // (softmax_lse is a view of its start, and keeps them alive until the launch is queued).
  const int64_t lse_n = num_heads_og * total_q;
  const int64_t accum_lse_n = n_splits > 1 ? n_splits * batch_size * num_heads * seqlen_q : 0;
  const int64_t extra = lse_transposed ? lse_n
                        : n_splits > 1 ? pad64(accum_lse_n) + accum_lse_n * head_dim_rounded(head_size) : 0;
  Tensor buf = empty_f32(extra > 0 ? pad64(lse_n) + extra : lse_n, device);
  // (num_heads, total_q) in both layouts: the swapped kernel writes (h_k, b * ngroups),
  // the same floats as upstream's reshape to (h_k * ngroups, b).
  Tensor softmax_lse = view_of(buf, {num_heads_og, total_q}, {total_q, 1}, 0);
  if (zero_tensors) {
    torch::stable::zero_(out);
    torch::stable::fill_(softmax_lse, -INFINITY);
  }
  if (max_seqlen_k <= 0) {
    torch::stable::zero_(out);
    torch::stable::fill_(softmax_lse, INFINITY);
    return {out, softmax_lse};
  }

  FLASH_NAMESPACE::Flash_fwd_params params;
  set_params_fprop(params, batch_size, seqlen_q, max_seqlen_k, num_heads, num_heads_k, head_size,
                   q, k, v, out, decode_batch ? nullptr : cu_seqlens_q.data_ptr(),
                   cu_seqlens_k.data_ptr(), ptr_or_null(seqused_k), nullptr,
                   softmax_lse.data_ptr(), p_dropout, softmax_scale, window_size_left,
                   window_size_right, softcap, swapped, /*unpadded_lse=*/true);
  params.total_q = swapped ? batch_size * ngroups : total_q;
  if (swapped) {
    // q[b, hk * ngroups + g] is row g of head hk of sequence b
    params.q_batch_stride = q.stride(0);
    params.q_row_stride = q.stride(1);
    params.q_head_stride = q.stride(1) * ngroups;
    params.o_batch_stride = out.stride(0);
    params.o_row_stride = out.stride(1);
    params.o_head_stride = out.stride(1) * ngroups;
  }
  params.leftpad_k = static_cast<int*>(ptr_or_null(leftpad_k));
  if (paged_kv) {
    params.block_table = static_cast<int*>(block_table->data_ptr());
    params.block_table_batch_stride = block_table->stride(0);
    params.k_batch_stride = k.stride(0);
    params.v_batch_stride = v.stride(0);
    params.page_block_size = k.size(1);
  } else {
    params.page_block_size = 1;
  }
  params.num_splits = int(n_splits);
  float* const base = static_cast<float*>(buf.data_ptr());
  if (n_splits > 1) {
    params.softmax_lseaccum_ptr = base + pad64(lse_n);
    params.oaccum_ptr = base + pad64(lse_n) + pad64(accum_lse_n);
  }
  if (lse_transposed) params.softmax_lse_ptr = base + pad64(lse_n);
  set_params_alibi(params, alibi_slopes);
  run_fwd(params, current_stream(q), /*split=*/n_splits > 1 || paged_kv);
  if (lse_transposed) {   // (h_k, b, ngroups) scratch -> (h_k, ngroups, b): one D2D copy
    Tensor dst = view_of(buf, {num_heads_k, ngroups, batch_size}, {ngroups * batch_size, batch_size, 1}, 0);
    Tensor src = view_of(buf, {num_heads_k, ngroups, batch_size}, {batch_size * ngroups, 1, ngroups},
                         pad64(lse_n));
    torch::stable::copy_(dst, src);
  }
  return {out, softmax_lse};
}

// vLLM passes a trailing `gen` (Generator?): always None (no dropout). The 2.11 stable ABI has
// no Generator type, so the boxed kernels check it is None and call the unboxed op without it.
namespace {
using BoxedFn = void(StableIValue*, uint64_t, uint64_t);
template <BoxedFn* Inner>
void drop_none_generator(StableIValue* stack, uint64_t num_args, uint64_t num_outputs) {
  STD_TORCH_CHECK(num_args >= 1, kWho, ": missing the generator argument");
  STD_TORCH_CHECK(stack[num_args - 1] == torch::stable::detail::from(std::nullopt), kWho,
                  ": a torch.Generator is not supported (no dropout in this op); pass None");
  Inner(stack, num_args - 1, num_outputs);
}
}  // namespace

STABLE_TORCH_LIBRARY(_vllm_fa2_C, m) {
  // vLLM's schema (vllm-flash-attn's flash_api_torch_lib.cpp), argument for argument
  m.def(
      "varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor(a!)? out, Tensor cu_seqlens_q, "
      "Tensor cu_seqlens_k, Tensor? seqused_k, Tensor? leftpad_k, Tensor? block_table, "
      "Tensor? alibi_slopes, int max_seqlen_q, int max_seqlen_k, float p_dropout, "
      "float softmax_scale, bool zero_tensors, bool is_causal, int window_size_left, "
      "int window_size_right, float softcap, bool return_softmax, int num_splits, "
      "Generator? gen) -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(_vllm_fa2_C, CUDA, m) {
  m.impl("varlen_fwd", &drop_none_generator<TORCH_BOX(&varlen_fwd)>);
}
