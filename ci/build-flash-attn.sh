#!/usr/bin/env bash
# Build the drop-in flash_attn wheel (products/flash-attn.toml), repair it,
# verify its cubins and check its ABI; the result lands in wheelhouse/.
#   archs:      BLACKWHEEL_ARCHS / TORCH_CUDA_ARCH_LIST (default 12.0a)
#   head dims:  BLACKWHEEL_FA_HEAD_DIMS (default 32,64,96,128,192,256)
#   directions: BLACKWHEEL_FA_DIRECTIONS (default fwd,bwd)
# Extra arguments go to `pip wheel` (e.g. --no-build-isolation).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
mkdir -p dist wheelhouse
rm -f dist/flash_attn-*.whl
if ! PYTHONUNBUFFERED=1 python -m blackwheel_factory wheel flash-attn -w dist -- -v "$@" 2>&1 \
     | tee dist/build-flash-attn.log | awk '/\[[0-9]+\/[0-9]+\]|blackwheel|error/ {print; fflush()}'; then
  echo "ci/build-flash-attn.sh: the build failed; full log: dist/build-flash-attn.log" >&2
  exit 1
fi
wheel=$(ls -t dist/flash_attn-*.whl | head -1)
python -m blackwheel_factory repair "$wheel" -w wheelhouse
repaired=$(ls -t wheelhouse/flash_attn-*.whl | head -1)
python -m blackwheel_factory verify "$repaired" --json wheelhouse/verify-flash-attn.json
python -m blackwheel_factory abi-check "$repaired"
sha256sum "$repaired"
