#!/usr/bin/env bash
# On a GPU host without network: the flash_attn wheel end to end.
#   bash ci/gpu-flash-attn.sh OUTDIR [WHEEL | BUNDLE ARCHS]
# With a WHEEL (built elsewhere, e.g. against torch 2.14.1 on the build machine):
# install it next to the host's torch (--no-deps: the host's torch is the drift
# under test). With a source BUNDLE (`python -m blackwheel_factory sources
# flash-attn cutlass --bundle B.tar.gz`): build it here first with
# ci/offline-build.sh (host torch, system nvcc; BLACKWHEEL_FA_HEAD_DIMS and
# BLACKWHEEL_FA_DIRECTIONS apply). Then: import, info, abi-check against the
# host's torch, upstream's tests/test_flash_attn.py from the pinned sdist
# (sampled, tests/upstream/sampling.py; BW_UPSTREAM_PER_GROUP), our GPU tests,
# and benchmarks/bench_flash_attn.py (BW_BENCH=0 skips it). Everything lands in OUTDIR.
set -uo pipefail
out="$(realpath -m "$1")"; shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
status=0
run() { local log="$1"; shift; echo "=== $*" | tee -a "$out/$log"
        "$@" > >(tee -a "$out/$log") 2>&1; local rc=$?
        if [ $rc -ne 0 ]; then echo "=== FAILED ($rc): $*" | tee -a "$out/$log"; status=1; fi; }
if [ "${1:-}" != "" ] && [ "${1%.whl}" != "$1" ]; then
  wheel="$(realpath "$1")"
else
  bundle="$(realpath "$1")"; archs="${2:-9.0a}"
  t0=$(date +%s)
  run build.txt bash "$repo/ci/offline-build.sh" "$bundle" "$out/build" "flash-attn|$archs"
  echo "build wall: $(( $(date +%s) - t0 )) s on $(nproc) cores" | tee -a "$out/build.txt"
  wheel="$(ls "$out"/build/wheels-*/flash_attn-*.whl | head -1)"
  # built with this host's toolchain: hold it to this host's glibc (as offline-build.sh does)
  export BLACKWHEEL_MANYLINUX="${BLACKWHEEL_MANYLINUX:-$(python3 -c 'import platform; print("manylinux_" + platform.libc_ver()[1].replace(".", "_"))')}"
  # the source tree for upstream's tests: the bundle's flash-attn tree
  mkdir -p "$out/src" && tar xzf "$bundle" -C "$out/src"
fi
[ -f "$wheel" ] || { echo "no wheel"; exit 1; }
ls -la "$wheel" | tee -a "$out/build.txt"
site="$(mktemp -d)"
python3 -m pip install -q --no-deps --no-index --target "$site" "$wheel" || exit 1
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
run import.txt python3 -c "import torch, flash_attn, flash_attn_2_cuda as c; from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache; print('torch', torch.__version__, '| flash_attn', flash_attn.__version__, 'from', flash_attn.__file__); print(c.build_info().get('product'), c.build_info().get('archs'), c.build_info()['kernels'])"
run abi-check.txt env PYTHONPATH="$repo/python:$PYTHONPATH" python3 -m blackwheel_factory abi-check "$site/flash_attn_2_cuda/_C.abi3.so" --abi stable ${BLACKWHEEL_MANYLINUX:+--policy "$BLACKWHEEL_MANYLINUX"}
tests="${BW_UPSTREAM_TESTS:-$(ls -d "$out"/src/trees/flash-attn-*/tests 2>/dev/null | head -1)}"
if [ -n "$tests" ] && [ -f "$tests/test_flash_attn.py" ]; then
  cd "$tests"
  run upstream-tests.txt env PYTHONPATH="$repo/tests/upstream:$PYTHONPATH" \
      timeout "${BW_UPSTREAM_TIMEOUT:-420}" python3 -m pytest -q -p sampling -p no:cacheprovider \
      -rfE --junitxml="$out/upstream-tests.xml" ${BW_UPSTREAM_XDIST:+-n "$BW_UPSTREAM_XDIST"} test_flash_attn.py
  cd "$repo"
  python3 "$repo/tests/upstream/summarize.py" "$out/upstream-tests.xml" > "$out/upstream-summary.txt" 2>&1 || true
  cat "$out/upstream-summary.txt"
else
  echo "upstream tests not found (give BW_UPSTREAM_TESTS=DIR)"; status=1
fi
run pytest-gpu.txt python3 -m pytest -q -p no:cacheprovider "$repo/tests/flash_attn_gpu"
[ "${BW_BENCH:-1}" = 0 ] || run bench.txt python3 "$repo/benchmarks/bench_flash_attn.py" --out "$out/bench" ${BW_BENCH_ARGS:-}
exit $status
