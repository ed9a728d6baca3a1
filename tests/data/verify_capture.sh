#!/bin/sh
# Regenerates the captured cuobjdump text under tests/data/verify_*.txt from real
# compiles of tests/data/verify_*.cu (nvcc 13.0.88 from /work/venv, cuobjdump 13.x).
# Usage: sh tests/data/verify_capture.sh [NVCC_BIN_DIR]
set -eu
BIN=${1:-/work/venv/lib/python3.11/site-packages/nvidia/cu13/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cc() { out=$1; shift; "$BIN/nvcc" -shared -Xcompiler -fPIC -cudart none -o "$T/$out.so" "$@"; }
cc sm120_sm90 -gencode arch=compute_120a,code=sm_120a -gencode arch=compute_90a,code=sm_90a "$HERE/verify_tiny.cu"
cc sm90_only -gencode arch=compute_90a,code=sm_90a "$HERE/verify_tiny.cu"
cc ptx120_sm90 -gencode arch=compute_120a,code=compute_120a -gencode arch=compute_90a,code=sm_90a "$HERE/verify_tiny.cu"
cc sm80_sm89 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_89,code=sm_89 "$HERE/verify_tiny.cu"
cc bigsmem -gencode arch=compute_120a,code=sm_120a "$HERE/verify_bigsmem.cu"
cc maxsmem -gencode arch=compute_120a,code=sm_120a -DBW_SMEM_BYTES=101376 "$HERE/verify_bigsmem.cu"
cc spill -gencode arch=compute_120a,code=sm_120a -maxrregcount=32 "$HERE/verify_spill.cu"
for n in sm120_sm90 sm80_sm89 sm90_only ptx120_sm90 bigsmem maxsmem spill; do
  "$BIN/cuobjdump" --list-elf --list-ptx "$T/$n.so" > "$HERE/verify_${n}.list.txt" 2>/dev/null || true
  "$BIN/cuobjdump" -res-usage "$T/$n.so" > "$HERE/verify_${n}.res.txt"
done
