#!/usr/bin/env bash
# Build vLLM itself (products/vllm.toml: the pinned vllm 0.33.0 sdist, vLLM's own
# CMake, blackwheel's controls), repair it, verify its cubins and check its ABI;
# the result lands in wheelhouse/.
#   archs:   BLACKWHEEL_ARCHS / TORCH_CUDA_ARCH_LIST (default 12.0a; also 12.0f, 12.1a, 9.0a)
#   subset:  BLACKWHEEL_VLLM_SUBSET=reduced (CI) | core (no Hopper-only Machete/W4A8);
#            unset: every target of products/vllm.toml
#   FA2:     vllm/vllm_flash_attn/_vllm_fa2_C (products/vllm.toml [family.flash_attn_2]):
#            BLACKWHEEL_FA_HEAD_DIMS=128 BLACKWHEEL_FA_DTYPES=bf16 for a reduced build
#   jobs:    MAX_JOBS, NVCC_THREADS (default: from cores and free memory, 10 GiB per job)
# Extra arguments go to `pip wheel` (e.g. --no-build-isolation).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
mkdir -p dist wheelhouse
rm -f dist/vllm-*.whl
if ! PYTHONUNBUFFERED=1 python -m blackwheel_factory wheel vllm -w dist -- -v "$@" 2>&1 \
     | tee dist/build-vllm.log | awk '/\[[0-9]+\/[0-9]+\]|blackwheel|error/ {print; fflush()}'; then
  echo "ci/build-vllm.sh: the build failed; full log: dist/build-vllm.log" >&2
  exit 1
fi
wheel=$(ls -t dist/vllm-*.whl | head -1)
python -m blackwheel_factory repair "$wheel" -w wheelhouse
repaired=$(ls -t wheelhouse/vllm-*.whl | head -1)
python -m blackwheel_factory verify "$repaired" --json wheelhouse/verify-vllm.json
python -m blackwheel_factory abi-check "$repaired"
sha256sum "$repaired"
