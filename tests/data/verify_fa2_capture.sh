#!/bin/sh
# Regenerates tests/data/verify_fa2_*.txt: cuobjdump text of two real
# FlashAttention-2 2.8.3 TUs (patched source tree from the blackwheel source
# cache) compiled for sm_120a with the flags cmake/kernels/FlashAttn2.cmake uses.
# Captured 2026-12-02 with nvcc 13.0.88 / cuobjdump 13 from /work/main/.venv
# (the backward TU takes ~9 minutes and ~6 GB). verify_fa2_fwd_hdim32_causal was
# read from the object of a product build (flash-attn, 12.0a, which adds
# -DENABLE_FP8 --compress-mode=size), the same TU as below.
# Usage: sh tests/data/verify_fa2_capture.sh FA_TREE CUTLASS_INCLUDE [NVCC_BIN_DIR] [TORCH_INCLUDE]
#   FA_TREE: ~/.cache/blackwheel/trees/flash-attn-2.8.3.post2-*/csrc/flash_attn
set -eu
FA=$1; CUTLASS=$2
BIN=${3:-/work/main/.venv/lib/python3.11/site-packages/nvidia/cu13/bin}
TORCH=${4:-/work/main/.venv/lib/python3.11/site-packages/torch/include}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
for pair in bwd_hdim128:flash_bwd_hdim128_bf16_sm80 fwd_split_hdim128:flash_fwd_split_hdim128_bf16_sm80 \
            fwd_hdim32_causal:flash_fwd_hdim32_fp16_causal_sm80; do
  n=${pair%%:*}; tu=${pair#*:}
  "$BIN/nvcc" -I"$FA" -I"$FA/src" -I"$CUTLASS" -I"$TORCH" -std=c++20 -O3 --use_fast_math \
    --expt-relaxed-constexpr --expt-extended-lambda -DTORCH_TARGET_VERSION=0x020B000000000000ULL \
    -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__ \
    -U__CUDA_NO_HALF2_OPERATORS__ -gencode=arch=compute_120a,code=sm_120a -c -o "$T/$n.o" "$FA/src/$tu.cu"
  "$BIN/cuobjdump" --list-elf --list-ptx "$T/$n.o" > "$HERE/verify_fa2_${n}.list.txt" 2>/dev/null || true
  "$BIN/cuobjdump" -res-usage "$T/$n.o" > "$HERE/verify_fa2_${n}.res.txt"
done
