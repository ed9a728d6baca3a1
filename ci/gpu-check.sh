#!/usr/bin/env bash
# Run on a GPU host after copying a wheel there (no network needed):
#   bash ci/gpu-check.sh path/to/blackwheel-*.whl [OUTDIR]
# Installs the wheel next to the host's torch (--no-deps: the host's torch is the
# drift under test), then: info, doctor (the wheel's own runtime), abi-check (the
# factory, from this checkout) against the host's torch, the
# smoke table, the GPU tests and the kernel benchmarks. Everything lands in OUTDIR.
set -uo pipefail
wheel="$1"; out="${2:-gpu-check}"
mkdir -p "$out"
site="$(mktemp -d)"
python3 -m pip install -q --no-deps --no-index --target "$site" "$wheel" || exit 1
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$out"
status=0
# run LOG CMD...: CMD's output to the screen and to LOG; a failure marks the run failed
run() { local log="$1"; shift; echo "=== $*" | tee -a "$log"
        "$@" > >(tee -a "$log") 2>&1; local rc=$?
        if [ $rc -ne 0 ]; then echo "=== FAILED ($rc): $*" | tee -a "$log"; status=1; fi; }
run import.txt python3 -c "import torch, blackwheel; print('torch', torch.__version__, '| blackwheel from', blackwheel.__file__)"
run info.txt python3 -m blackwheel info
run doctor.txt python3 -m blackwheel doctor
for so in "$site"/blackwheel/_*.abi3.so; do
  # BLACKWHEEL_MANYLINUX: for a wheel built on this host (its glibc), not the project's policy
  # the factory is not in the wheel: it runs from this checkout
  run abi-check.txt env PYTHONPATH="$PYTHONPATH:$repo/python" python3 -m blackwheel_factory abi-check "$so" --abi stable ${BLACKWHEEL_MANYLINUX:+--policy "$BLACKWHEEL_MANYLINUX"}
done
run smoke.txt python3 -m blackwheel smoke --json smoke.json
run pytest-gpu.txt python3 -m pytest -q -p no:cacheprovider "$repo/tests/gpu"
run bench.txt python3 "$repo/benchmarks/bench_kernels.py" --out-dir bench
exit $status
