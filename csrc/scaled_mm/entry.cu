// blackwheel scaled_mm: dispatch for vLLM's FP8 cutlass_scaled_mm and the op
// registration under torch.ops.blackwheel. Mirrors vLLM 0.33's
// scaled_mm_entry.cu for the paths blackwheel builds (per-tensor, per-token and
// per-channel scales); only the arch groups compiled into this library are
// reachable, and any other GPU gets a clear error instead of a launch failure.
#include <cstdint>
#include <optional>

#include <cuda_runtime.h>

#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include "cutlass_extensions/common.hpp"  // get_sm_version_num

using torch::stable::Tensor;

#include "c3x/scaled_mm_kernels.hpp"  // vllm::cutlass_scaled_mm_sm{90,120}_fp8

#if BW_SCALED_MM_C2X
void cutlass_scaled_mm_sm89(Tensor& c, Tensor const& a, Tensor const& b,
                            Tensor const& a_scales, Tensor const& b_scales,
                            std::optional<Tensor> const& bias);
#endif

namespace {

constexpr const char* kBuilt = ""
#if BW_SCALED_MM_SM120
                               " sm_12x(CUTLASS 3.x SM120)"
#endif
#if BW_SCALED_MM_SM90
                               " sm_90a(CUTLASS 3.x)"
#endif
#if BW_SCALED_MM_C2X
                               " sm_89(CUTLASS 2.x)"
#endif
    ;

void check_c3x_operands(const Tensor& c, const Tensor& a, const Tensor& b) {
  auto check = [](const Tensor& t, const char* name, int dim) {
    STD_TORCH_CHECK(t.size(dim) <= 1 || t.stride(dim) == t.size(1 - dim),
                    "blackwheel.scaled_mm: CUTLASS 3.x requires packed operands; ",
                    name, " is not packed");
    STD_TORCH_CHECK(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0,
                    "blackwheel.scaled_mm: CUTLASS 3.x requires 16-byte-aligned "
                    "pointers; ", name, " is misaligned");
  };
  check(a, "A", 0);
  check(b, "B", 1);
  check(c, "output", 0);
}

void check_scales(const Tensor& a, const Tensor& b, const Tensor& a_scales,
                  const Tensor& b_scales) {
  using torch::headeronly::ScalarType;
  STD_TORCH_CHECK(a.scalar_type() == ScalarType::Float8_e4m3fn &&
                      b.scalar_type() == ScalarType::Float8_e4m3fn,
                  "blackwheel.scaled_mm: A and B must be float8_e4m3fn");
  STD_TORCH_CHECK(a_scales.scalar_type() == ScalarType::Float &&
                      b_scales.scalar_type() == ScalarType::Float,
                  "blackwheel.scaled_mm: scales must be float32");
  STD_TORCH_CHECK(a_scales.numel() == 1 || a_scales.numel() == a.size(0),
                  "blackwheel.scaled_mm: a_scales must have 1 or M elements "
                  "(blockwise scales are not in this build)");
  STD_TORCH_CHECK(b_scales.numel() == 1 || b_scales.numel() == b.size(1),
                  "blackwheel.scaled_mm: b_scales must have 1 or N elements "
                  "(blockwise scales are not in this build)");
  STD_TORCH_CHECK(a_scales.is_contiguous() && b_scales.is_contiguous(),
                  "blackwheel.scaled_mm: scales must be contiguous");
}

}  // namespace

void blackwheel_cutlass_scaled_mm(Tensor& c, Tensor const& a, Tensor const& b,
                                  Tensor const& a_scales, Tensor const& b_scales,
                                  std::optional<Tensor> const& bias) {
  STD_TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2,
                  "blackwheel.scaled_mm: A, B and out must be 2-D");
  STD_TORCH_CHECK(c.size(0) == a.size(0) && a.size(1) == b.size(0) &&
                      b.size(1) == c.size(1),
                  "blackwheel.scaled_mm: shapes do not conform: out [M,N] = A [M,K] @ B [K,N]");
  STD_TORCH_CHECK(a.stride(1) == 1 && c.stride(1) == 1,
                  "blackwheel.scaled_mm: A and out must be row-major");
  STD_TORCH_CHECK(b.stride(0) == 1, "blackwheel.scaled_mm: B must be column-major (pass w.t())");
  STD_TORCH_CHECK(c.stride(0) % 16 == 0 && b.stride(1) % 16 == 0,
                  "blackwheel.scaled_mm: N and K must be multiples of 16 (16-byte alignment)");
  if (bias) {
    STD_TORCH_CHECK(bias->numel() == b.size(1) && bias->is_contiguous() && bias->dim() == 1,
                    "blackwheel.scaled_mm: bias must be contiguous with N elements");
  }
  check_scales(a, b, a_scales, b_scales);

  const torch::stable::accelerator::DeviceGuard device_guard(a.get_device_index());
  const int32_t sm = get_sm_version_num();
  (void)sm;
#if BW_SCALED_MM_SM120
  if (sm >= 120 && sm < 130) {
    check_c3x_operands(c, a, b);
    vllm::cutlass_scaled_mm_sm120_fp8(c, a, b, a_scales, b_scales, bias);
    return;
  }
#endif
#if BW_SCALED_MM_SM90
  if (sm == 90) {
    check_c3x_operands(c, a, b);
    vllm::cutlass_scaled_mm_sm90_fp8(c, a, b, a_scales, b_scales, bias);
    return;
  }
#endif
#if BW_SCALED_MM_C2X
  if (sm == 89) {
    cutlass_scaled_mm_sm89(c, a, b, a_scales, b_scales, bias);
    return;
  }
#endif
  STD_TORCH_CHECK(false, "NotImplementedError: blackwheel.scaled_mm: no kernel for SM ", sm,
                                  " in this wheel (built:", kBuilt,
                                  "); rebuild with BLACKWHEEL_ARCHS including this GPU's arch");
}

bool blackwheel_cutlass_scaled_mm_supports_fp8(int64_t capability) {
#if BW_SCALED_MM_SM120
  if (capability >= 120 && capability < 130) return true;
#endif
#if BW_SCALED_MM_SM90
  if (capability == 90) return true;
#endif
#if BW_SCALED_MM_C2X
  if (capability == 89) return true;
#endif
  (void)capability;
  return false;
}

STABLE_TORCH_LIBRARY_FRAGMENT(blackwheel, m) {
  m.def(
      "cutlass_scaled_mm(Tensor! out, Tensor a,"
      "                  Tensor b, Tensor a_scales,"
      "                  Tensor b_scales, Tensor? bias) -> ()");
  m.def("cutlass_scaled_mm_supports_fp8(int cuda_device_capability) -> bool");
}

STABLE_TORCH_LIBRARY_IMPL(blackwheel, CUDA, m) {
  m.impl("cutlass_scaled_mm", TORCH_BOX(&blackwheel_cutlass_scaled_mm));
}

STABLE_TORCH_LIBRARY_IMPL(blackwheel, CompositeExplicitAutograd, m) {
  m.impl("cutlass_scaled_mm_supports_fp8",
         TORCH_BOX(&blackwheel_cutlass_scaled_mm_supports_fp8));
}
