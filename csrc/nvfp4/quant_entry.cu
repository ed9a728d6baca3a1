// blackwheel nvfp4: op registration for vLLM's NVFP4 quantization and SM120
// FP4 GEMM under torch.ops.blackwheel. The allocation logic of
// scaled_fp4_quant follows vLLM 0.33's nvfp4_quant_entry.cu; the kernels are
// vLLM's (scaled_fp4_quant_sm1xxa, cutlass_scaled_fp4_mm).
#include <tuple>

#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include "cutlass_extensions/common.hpp"  // get_sm_version_num
#include "nvfp4_utils.cuh"                // computeSwizzledSFShape, CVT_FP4_SF_VEC_SIZE

using torch::stable::Tensor;

void scaled_fp4_quant_sm1xxa(Tensor const& output, Tensor const& input,
                             Tensor const& output_sf, Tensor const& input_sf,
                             bool is_sf_swizzled_layout);
void cutlass_scaled_fp4_mm(Tensor& D, const Tensor& A, const Tensor& B,
                           const Tensor& A_sf, const Tensor& B_sf,
                           const Tensor& alpha);
bool cutlass_scaled_mm_supports_fp4(int64_t cuda_device_capability);

namespace {

void require_sm12x() {
  const int32_t sm = get_sm_version_num();
  STD_TORCH_CHECK(sm >= 120 && sm < 130,
                  "blackwheel nvfp4: the NVFP4 kernels are built for the SM_120 family "
                  "only (RTX 50xx / RTX PRO 6000); this GPU is SM ", sm);
}

}  // namespace

void blackwheel_scaled_fp4_quant_out(Tensor const& input, Tensor const& input_sf,
                                     bool is_sf_swizzled_layout, Tensor& output,
                                     Tensor& output_sf) {
  const torch::stable::accelerator::DeviceGuard device_guard(input.get_device_index());
  require_sm12x();
  scaled_fp4_quant_sm1xxa(output, input, output_sf, input_sf, is_sf_swizzled_layout);
}

std::tuple<Tensor, Tensor> blackwheel_scaled_fp4_quant(Tensor const& input,
                                                       Tensor const& input_sf,
                                                       bool is_sf_swizzled_layout) {
  STD_TORCH_CHECK(input.dim() >= 1, "blackwheel.scaled_fp4_quant: input must have a last dim");
  const int64_t n = input.size(-1);
  STD_TORCH_CHECK(n % 16 == 0, "blackwheel.scaled_fp4_quant: last dim must be a multiple of 16");
  const int64_t m = input.numel() / n;
  auto device = input.device();
  // Two fp4 values packed into one uint8.
  auto output = torch::stable::empty({m, n / 2}, torch::headeronly::ScalarType::Byte,
                                     std::nullopt, device);
  Tensor output_sf;
  if (is_sf_swizzled_layout) {
    auto [sf_m, sf_n] = vllm::computeSwizzledSFShape(m, n);
    output_sf = torch::stable::empty({sf_m, sf_n}, torch::headeronly::ScalarType::Int,
                                     std::nullopt, device);
  } else {
    output_sf = torch::stable::empty({m, n / CVT_FP4_SF_VEC_SIZE},
                                     torch::headeronly::ScalarType::Byte, std::nullopt,
                                     device);
  }
  blackwheel_scaled_fp4_quant_out(input, input_sf, is_sf_swizzled_layout, output, output_sf);
  return {output, output_sf};
}

STABLE_TORCH_LIBRARY_FRAGMENT(blackwheel, m) {
  m.def(
      "scaled_fp4_quant(Tensor input, Tensor input_scale, "
      "bool is_sf_swizzled_layout) -> (Tensor, Tensor)");
  m.def(
      "cutlass_scaled_fp4_mm(Tensor! out, Tensor a, Tensor b,"
      "                      Tensor block_scale_a, Tensor block_scale_b,"
      "                      Tensor alpha) -> ()");
  m.def("cutlass_scaled_mm_supports_fp4(int cuda_device_capability) -> bool");
}

STABLE_TORCH_LIBRARY_IMPL(blackwheel, CUDA, m) {
  m.impl("scaled_fp4_quant", TORCH_BOX(&blackwheel_scaled_fp4_quant));
  m.impl("cutlass_scaled_fp4_mm", TORCH_BOX(&cutlass_scaled_fp4_mm));
}

STABLE_TORCH_LIBRARY_IMPL(blackwheel, CompositeExplicitAutograd, m) {
  m.impl("cutlass_scaled_mm_supports_fp4", TORCH_BOX(&cutlass_scaled_mm_supports_fp4));
}
