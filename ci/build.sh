#!/usr/bin/env bash
# The main job (README): build the wheel, repair it, verify it.
#   1. pip wheel .  (isolated PEP 517 build: build-system.requires pins torch and
#      the CUDA toolchain; kernel sets/archs from BLACKWHEEL_KERNELS/BLACKWHEEL_ARCHS)
#   2. repair       (auditwheel: manylinux tag, torch/CUDA never vendored)
#   3. verify       (SASS for every requested arch in every family, resources)
#   4. abi-check    (every undefined symbol against the locked torch, stable shim only)
# Result: wheelhouse/blackwheel-*.whl and wheelhouse/verify.json.
# Extra arguments go to `pip wheel` (e.g. -C cmake.define.BLACKWHEEL_KERNELS=marlin_fp4).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
mkdir -p dist wheelhouse
rm -f dist/blackwheel-*.whl
# full log in dist/build.log; progress ([n/N] from ninja) and blackwheel's lines shown
if ! PYTHONUNBUFFERED=1 python -m pip wheel --no-deps -v . -w dist "$@" 2>&1 | tee dist/build.log \
     | awk '/\[[0-9]+\/[0-9]+\]|blackwheel|error/ {print; fflush()}'; then
  echo "ci/build.sh: the build failed; full log: dist/build.log" >&2
  exit 1
fi
wheel=$(ls dist/blackwheel-*.whl)
python -m blackwheel_factory repair "$wheel" -w wheelhouse
repaired=$(ls -t wheelhouse/blackwheel-*.whl | head -1)
python -m blackwheel_factory verify "$repaired" --json wheelhouse/verify.json
python -m blackwheel_factory abi-check "$repaired"
sha256sum "$repaired"
