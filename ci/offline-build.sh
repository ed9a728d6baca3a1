#!/usr/bin/env bash
# Build on a host without network (e.g. a many-core GPU host) from a source bundle
# made elsewhere with `python -m blackwheel_factory sources --bundle B.tar.gz`, against the
# host's own torch (re-locked in a scratch copy of this checkout) with
# --no-build-isolation and the host's nvcc (BLACKWHEEL_NVCC, default system).
#   bash ci/offline-build.sh B.tar.gz OUTDIR "KERNELS|ARCHS" ["KERNELS|ARCHS" ...]
# e.g. "marlin_fp4|12.0a" "all|12.0a" "all|9.0a;12.0a" (kernel-pack sets), or a product of
# products/: "flash-attn|9.0a", "vllm|9.0a", "kernel-pack|12.0a" (= "all|12.0a")
# (BLACKWHEEL_FA_HEAD_DIMS / BLACKWHEEL_FA_DIRECTIONS apply). Prints one timing line per build;
# wheels land in OUTDIR/wheels-<tag>/, build logs and reports in OUTDIR.
set -euo pipefail
bundle="$(realpath "$1")"; out="$(realpath -m "$2")"; shift 2
mkdir -p "$out"
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${BW_SCRATCH:-$(mktemp -d)}"   # BW_SCRATCH: a fixed dir lets a second run reuse the build dirs
mkdir -p "$scratch"
export BLACKWHEEL_CACHE="$scratch/cache" BLACKWHEEL_OFFLINE=1
export BLACKWHEEL_NVCC="${BLACKWHEEL_NVCC:-system}" BLACKWHEEL_COMPILER_CACHE="${BLACKWHEEL_COMPILER_CACHE:-off}"
mkdir -p "$BLACKWHEEL_CACHE" && tar xzf "$bundle" -C "$BLACKWHEEL_CACHE"
(cd "$repo" && git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.git/*') \
  | (cd "$repo" && while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done) \
  | (cd "$repo" && tar cf - -T -) | (mkdir -p "$scratch/src" && cd "$scratch/src" && tar xf -)
cd "$scratch/src"
PYTHONPATH=python python3 -m blackwheel_factory lock            # this host's torch becomes the lock
# the post-link ABI check holds the binaries to this host's glibc, not the project's policy
export BLACKWHEEL_MANYLINUX="${BLACKWHEEL_MANYLINUX:-$(python3 -c 'import platform; print("manylinux_" + platform.libc_ver()[1].replace(".", "_"))')}"
for spec in "$@"; do
  kernels="${spec%%|*}"; archs="${spec#*|}"; tag="${kernels//;/+}_${archs//;/-}"   # no ";" in paths (CMake lists)
  start=$(date +%s.%N)
  if [ -f "products/$kernels.toml" ]; then   # a product (e.g. flash-attn), not kernel-pack sets
    build=(env BLACKWHEEL_ARCHS="$archs" python3 -m blackwheel_factory wheel "$kernels" -w "$scratch/dist-$tag"
           -- --no-build-isolation -v -C build-dir="$scratch/build-$tag")
  else
    build=(env BLACKWHEEL_KERNELS="$kernels" BLACKWHEEL_ARCHS="$archs" python3 -m pip wheel --no-build-isolation
           --no-deps -v . -w "$scratch/dist-$tag" -C build-dir="$scratch/build-$tag")
  fi
  if PYTHONPATH="python${PYTHONPATH:+:$PYTHONPATH}" "${build[@]}" > "$out/build-$tag.log" 2>&1; then
    end=$(date +%s.%N); whl=$(ls "$scratch/dist-$tag"/*.whl)
    python3 -c 'import sys, os; t, w, c = sys.argv[1:4]; print(f"build {t:<28} {float(sys.argv[5]) - float(sys.argv[4]):7.1f} s  {os.path.getsize(w) / 1e6:6.1f} MB  {c} cores")' \
      "$tag" "$whl" "$(nproc)" "$start" "$end"
    mkdir -p "$out/wheels-$tag" && cp "$whl" "$out/wheels-$tag/"
    PYTHONPATH=python python3 -m blackwheel_factory build-report "$scratch/build-$tag" > "$out/report-$tag.txt" 2>&1 || true
  else
    echo "build $tag FAILED: see $out/build-$tag.log"; tail -30 "$out/build-$tag.log"
  fi
done
