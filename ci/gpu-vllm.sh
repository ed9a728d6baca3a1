#!/usr/bin/env bash
# The vllm product on the GPU host (issue 18), in calls of at most 10 min each (the device
# tool's limit); long steps run in the background (setsid) and survive between calls:
#   bash ci/gpu-vllm.sh pack-tests   (on the build machine, not the GPU host) write
#                                    carry/vllm-tests.tar.gz: the files of the pinned sdist's
#                                    tests/ that the kernel test files below need
#   bash ci/gpu-vllm.sh start        the vllm wheel for 9.0a from carry/bundle-vllm.tar.gz
#                                    (BLACKWHEEL_VLLM_SUBSET=core, MAX_JOBS=16, nice 19, every
#                                    compile job measured), then installed --no-deps beside
#                                    the host's torch with carry/vllm-deps/
#   bash ci/gpu-vllm.sh use WHEEL    instead of start: install a vllm wheel built elsewhere (carried)
#   bash ci/gpu-vllm.sh setup        only the host set-up of start/use (the wheel comes in a later call)
#   bash ci/gpu-vllm.sh drift WHEEL  import a wheel locked to another torch under this host's torch
#   bash ci/gpu-vllm.sh probe        vLLM's rotary tests and v1 attention-backend tests (after use)
#   bash ci/gpu-vllm.sh fa2-ab SO    a rebuilt _vllm_fa2_C against the installed wheel's (after tests)
#   bash ci/gpu-vllm.sh wait         progress; waits up to WAIT*5 s (default 105: ~9 min); once
#                                    built, the build's logs and per-job peaks -> $OUT/vllm-build.tgz
#   bash ci/gpu-vllm.sh tests        import; vLLM's own kernel tests (sampled:
#                                    tests/upstream/vllm_sampling.py, BW_VLLM_PER_GROUP), per
#                                    file passed/failed/skipped; tests/vllm_gpu (vllm.LLM vs HF
#                                    greedy); abi-check; verify; results -> $OUT/vllm-results.tgz
#                                    then benchmarks/bench_vllm_fa2.py (BQ: --quick; BT: 240 s)
#                                    (call it again if it has not finished: it goes on waiting)
# Carried: carry/bundle-vllm.tar.gz (python -m blackwheel_factory sources vllm cutlass cutlass-library flash-attn --bundle ...: flash-attn for vllm_flash_attn/_vllm_fa2_C),
# carry/vllm-deps/ (ci/vllm-gpu-requirements.txt), carry/vllm-tests.tar.gz, carry/wheels/
# (pyelftools, auditwheel). Knobs: SUBSET (BLACKWHEEL_VLLM_SUBSET, core), MJ (MAX_JOBS, 16), PG (BW_VLLM_PER_GROUP, 8), XD (xdist
# workers, 8), KT (kernel tests' time limit, 420 s; 0: skip them), TT (one test's limit, 240 s), GT (tests/vllm_gpu's
# limit, 900 s), GTF (which of tests/vllm_gpu, all), BT (the benchmark's limit, 240 s; 0: skip it), FAHD (start: FA2 head dims, 64,96,128,256: the
# kernels of vLLM's test_flash_attn.py head sizes 40-256 and the tiny Llama's 64; bf16), NV (set: no verify on the host), ABX (more bench_vllm_fa2.py options for fa2-ab), PT (probe limit, 150 s).
set -u
W=/tmp/bwv; REPO=$PWD
mkdir -p $W
export PYTHONUNBUFFERED=1
[ -x /usr/bin/g++ ] && export CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
# the kernel test files (relative to the sdist's root); NVFP4 files skip below SM 10.0
KERNEL_TESTS="tests/kernels/quantization/test_cutlass_scaled_mm.py tests/kernels/quantization/test_fp8_quant.py
  tests/kernels/quantization/test_marlin_gemm.py tests/kernels/moe/test_moe.py tests/kernels/moe/test_moe_align_block_size.py
  tests/kernels/core/test_activation.py tests/kernels/core/test_layernorm.py tests/kernels/core/test_rotary_embedding.py
  tests/kernels/core/test_pos_encoding.py tests/kernels/attention/test_cache.py tests/kernels/test_cache_kernels.py
  tests/kernels/quantization/test_nvfp4_quant.py tests/kernels/quantization/test_nvfp4_scaled_mm.py
  tests/kernels/attention/test_flash_attn.py tests/v1/attention/test_attention_backends.py"
# what they import from tests/ (measured by collecting them: conftest chain, helpers)
SUPPORT="tests/__init__.py tests/ci_envs.py tests/conftest.py tests/utils.py tests/kernels/__init__.py
  tests/kernels/allclose_default.py tests/kernels/conftest.py tests/kernels/utils.py tests/kernels/quant_utils.py
  tests/kernels/attention/conftest.py tests/kernels/moe/__init__.py tests/kernels/moe/conftest.py tests/kernels/moe/utils.py
  tests/kernels/quantization/nvfp4_utils.py tests/models/__init__.py tests/models/registry.py tests/models/utils.py
  tests/quantization/__init__.py tests/quantization/utils.py tests/v1/__init__.py tests/v1/attention/utils.py"
KT_FILES=$(echo $KERNEL_TESTS)   # one line: it goes into a bash -c script
elapsed() { echo "[$(( $(date +%s) - $(cat $W/t0 2>/dev/null || date +%s) )) s since start]"; }
progress() { grep -a "\[[0-9]*/[0-9]*\]" $W/out/build-*.log 2>/dev/null | tail -1 | cut -c1-70; echo "jobs measured: $(wc -l < $W/jobs.jsonl 2>/dev/null || echo 0)"; }
wheel() { ls $W/out/wheels-*/vllm-*.whl 2>/dev/null | head -1; }
# peak RSS / wall per source directory (csrc/quantization/marlin, csrc/moe/..., ...)
jobs_by_dir() { python3 - "$1" <<'EOF'
import json, re, sys
from collections import defaultdict
by = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    m = re.search(r"csrc/((?:[^/]+/){0,2})", r["source"] or "")
    by[(m.group(1).rstrip("/") if m else "(generated/other)")].append(r)
print(f"{'source dir':<40} {'TUs':>4} {'peak MiB max':>12} {'median':>7} {'wall s max':>10} {'CPU s sum':>9}")
for k in sorted(by, key=lambda k: -max(r["peak_rss_mib"] for r in by[k])):
    rs = sorted(by[k], key=lambda r: r["peak_rss_mib"])
    print(f"{k:<40} {len(rs):>4} {rs[-1]['peak_rss_mib']:>12} {rs[len(rs)//2]['peak_rss_mib']:>7} "
          f"{max(r['wall_s'] for r in rs):>10} {sum(r['cpu_s'] for r in rs):>9.0f}")
print("failed jobs:", sum(r["rc"] != 0 for rs in by.values() for r in rs))
EOF
}

host_setup() {   # host facts, the carried tools and vLLM's dependencies
  date +%s > $W/t0
  { nproc; free -g | head -2; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, torch, transformers, triton; print(sys.version.split()[0], torch.__version__, transformers.__version__, triton.__version__)"
    which g++ nvcc cuobjdump; nvcc --version | tail -1; g++ --version | head -1; cmake --version | head -1
    git -C $REPO log --oneline -1 2>/dev/null; ls -la carry/; } > $W/host.txt 2>&1
  python3 -m pip install -q --no-deps --no-index --target $W/tools carry/wheels/*.whl > $W/tools.log 2>&1
  python3 -m pip install -q --no-deps --no-index --target $W/deps carry/vllm-deps/*.whl > $W/deps.log 2>&1
}

case "${1:-}" in
pack-tests)   # on the build machine: the sdist's tree from `python -m blackwheel_factory sources vllm`
  src="${2:-$(PYTHONPATH=python python3 -m blackwheel_factory sources vllm | sed -n 's/^vllm: //p')}"
  [ -f "$src/tests/conftest.py" ] || { echo "no vLLM tests/ under '$src': give the sdist tree as \$2"; exit 1; }
  t=$(mktemp -d); mkdir -p $t/vllm-tests
  (cd "$src" && tar cf - $KERNEL_TESTS $SUPPORT) | tar xf - -C $t/vllm-tests || exit 1
  cat > $t/vllm-tests/pytest.ini <<'EOF'
[pytest]
# vLLM's markers (its pyproject.toml); flaky is pytest-rerunfailures', not on the GPU host
markers =
    slow_test
    skip_global_cleanup
    core_model
    hybrid_model
    cpu_model
    cpu_test
    split
    distributed
    optional
    flaky
EOF
  mkdir -p carry && tar czf carry/vllm-tests.tar.gz --sort=name --owner=0 --group=0 --mtime=@0 -C $t vllm-tests
  rm -rf $t; ls -la carry/vllm-tests.tar.gz
  ;;
setup)   # host facts, carried tools and vLLM's dependencies only (when the wheel travels in a
         # later call: the 64 MiB carry limit), e.g. carry=[carry] then carry=[carry-whl]
  host_setup; cat $W/host.txt; tail -3 $W/tools.log $W/deps.log
  ;;
use)   # a vllm wheel built elsewhere (bash ci/build-vllm.sh on the CPU machine), carried: no build here
  whl="${2:?usage: bash ci/gpu-vllm.sh use carry/vllm-*.whl}"
  [ -f $W/t0 ] || host_setup
  mkdir -p $W/out/wheels-carried && cp "$whl" $W/out/wheels-carried/ && sha256sum "$whl" | tee $W/build.log
  python3 -m pip install -q --no-deps --no-index --target $W/site "$whl" && echo "installed into $W/site" | tee -a $W/build.log
  echo "=== BUILD DONE (carried wheel, built on another machine)" >> $W/build.log
  cat $W/host.txt
  ;;
drift)   # bash ci/gpu-vllm.sh drift WHEEL: a wheel locked to another torch, imported under this host's
  whl="${2:?usage: bash ci/gpu-vllm.sh drift carry-drift/vllm-*.whl}"; d=$W/drift-$(basename "$whl" .whl)
  python3 -m pip install -q --no-deps --no-index --target $d "$whl" && cd /tmp &&
  PYTHONPATH=$d:$W/deps python3 -c "
import json, torch, vllm, vllm._custom_ops
from vllm.vllm_flash_attn import flash_attn_varlen_func, is_fa_version_supported
rec = json.load(open(vllm.__file__.replace('__init__.py', '_build_info.json')))
print('running torch', torch.__version__, '| built against', rec['torch']['lock']['version'], '(requires', rec['torch']['requirement'] + ')', '| archs', rec.get('archs'))
print('import vllm, vllm._custom_ops, vllm.vllm_flash_attn: ok |', len(dir(torch.ops._C)), '_C ops |', vllm.__file__)
print('FA2 supported here:', is_fa_version_supported(2))" 2>&1 | tee ${OUT:-/tmp}/drift-$(basename "$whl" .whl).txt
  ;;
start)
  if [ ! -f $W/t0 ]; then
    host_setup
    setsid nohup env BW_SCRATCH=$W/scratch MAX_JOBS=${MJ:-16} BLACKWHEEL_VLLM_SUBSET=${SUBSET:-core} PYTHONPATH=$W/tools \
      BLACKWHEEL_FA_HEAD_DIMS=${FAHD:-64,96,128,256} BLACKWHEEL_FA_DTYPES=bf16 \
      CMAKE_CUDA_COMPILER_LAUNCHER=$REPO/benchmarks/nvcc_peak_launcher.py \
      CMAKE_CXX_COMPILER_LAUNCHER=$REPO/benchmarks/nvcc_peak_launcher.py BLACKWHEEL_JOB_LOG=$W/jobs.jsonl \
      bash -c "t=\$(date +%s); nice -n 19 bash ci/offline-build.sh carry/bundle-vllm.tar.gz $W/out 'vllm|9.0a'
        echo \"vllm build wall \$(( \$(date +%s) - t )) s on \$(nproc) cores\"
        whl=\$(ls $W/out/wheels-*/vllm-*.whl | head -1) && ls -la \$whl && sha256sum \$whl &&
        python3 -m pip install -q --no-deps --no-index --target $W/site \$whl && echo installed into $W/site
        echo === BUILD DONE" > $W/build.log 2>&1 < /dev/null &
  fi
  cat $W/host.txt; tail -3 $W/tools.log $W/deps.log 2>/dev/null
  ;&
wait)
  for i in $(seq 1 ${WAIT:-105}); do grep -q "^=== BUILD DONE" $W/build.log 2>/dev/null && break; sleep 5; done
  tail -8 $W/build.log; progress; elapsed
  [ -s $W/jobs.jsonl ] && jobs_by_dir $W/jobs.jsonl | head -30
  if grep -q "^=== BUILD DONE" $W/build.log 2>/dev/null && [ -n "${OUT:-}" ]; then   # the build's logs come back
    [ -s $W/jobs.jsonl ] && jobs_by_dir $W/jobs.jsonl > $W/out/jobs-by-dir.txt 2>&1 && cp $W/jobs.jsonl $W/out/
    tar czf $OUT/vllm-build.tgz -C $W build.log host.txt $(cd $W && ls out/build-*.log out/report-* out/jobs* 2>/dev/null)
  fi
  ;;
tests)
  if [ ! -f $W/tests-started ]; then
    touch $W/tests-started
    setsid nohup bash -c "
      export PYTHONPATH=$W/site:$W/deps NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 HF_HUB_OFFLINE=1
      mkdir -p $W/res && cd /tmp
      whl=\$(ls $W/out/wheels-*/vllm-*.whl | head -1)
      [ -n \"\$whl\" ] && [ -d $W/site/vllm ] || { echo 'no vllm wheel built/installed: see $W/build.log'; echo === TESTS DONE; exit 1; }
      python3 -c 'import torch, vllm, vllm._custom_ops; from vllm import LLM; print(\"torch\", torch.__version__, \"| vllm\", vllm.__version__, \"from\", vllm.__file__); print(\"_C ops:\", len(dir(torch.ops._C)), \"| _moe_C ops:\", len(dir(torch.ops._moe_C)))' > $W/res/import.txt 2>&1
      tail -3 $W/res/import.txt
      cd $REPO; t=\$(date +%s)
      BW_VLLM_GPU_RECORD=$W/res/generate.jsonl timeout ${GT:-900} python3 -m pytest -q -p no:cacheprovider -rA -s \
        --junitxml=$W/res/generate.xml ${GTF:-tests/vllm_gpu} > $W/res/generate.txt 2>&1
      echo \"generate tests rc \$? wall \$(( \$(date +%s) - t )) s\" | tee -a $W/res/generate.txt
      PYTHONPATH=$REPO/python:$W/tools:\$PYTHONPATH python3 -m blackwheel_factory info --wheel \$whl > $W/res/info.txt 2>&1
      PYTHONPATH=$REPO/python:$W/tools:\$PYTHONPATH python3 -m blackwheel_factory abi-check \$whl \
        --policy manylinux_\$(python3 -c 'import platform; print(platform.libc_ver()[1].replace(\".\", \"_\"))') > $W/res/abi-check.txt 2>&1
      echo \"abi-check rc \$?\" >> $W/res/abi-check.txt
      if [ -n \"${NV:-}\" ]; then echo 'verify not run here (NV set: verified on the build machine)' > $W/res/verify.txt
      elif command -v cuobjdump > /dev/null; then
        PYTHONPATH=$REPO/python:$W/tools:\$PYTHONPATH python3 -m blackwheel_factory verify \$whl --json $W/res/verify.json > $W/res/verify.txt 2>&1
        echo \"verify rc \$?\" >> $W/res/verify.txt
      else echo 'no cuobjdump on this host: verify not run' > $W/res/verify.txt; fi
      rm -rf $W/vt && mkdir -p $W/vt && tar xzf $REPO/carry/vllm-tests.tar.gz -C $W/vt && cd $W/vt/vllm-tests
      mkdir -p Qwen && ln -sfn $REPO/tests/vllm_gpu/hf_configs/Qwen3-0.6B Qwen/Qwen3-0.6B   # the config the v1 backend tests name
      if [ \"${KT:-420}\" = 0 ]; then echo 'kernel tests skipped (KT=0)' | tee $W/res/kernel-summary.txt; else
      t=\$(date +%s)
      PYTHONPATH=$REPO/tests/upstream:\$PYTHONPATH BW_VLLM_PER_GROUP=${PG:-8} BW_VLLM_SAMPLE_REPORT=$W/res/sample.txt timeout ${KT:-420} \
        python3 -m pytest -v -p vllm_sampling -p no:cacheprovider -rfE -n ${XD:-8} --timeout=${TT:-240} \
        --junitxml=$W/res/kernel-tests.xml $KT_FILES > $W/res/kernel-tests.txt 2>&1
      echo \"kernel tests rc \$? wall \$(( \$(date +%s) - t )) s\" | tee -a $W/res/kernel-tests.txt
      if [ -f $W/res/kernel-tests.xml ]; then
        python3 $REPO/tests/upstream/summarize.py $W/res/kernel-tests.xml --per-file > $W/res/kernel-summary.txt 2>&1
      else   # cut by the time limit before pytest wrote its XML: count the -v lines per file
        echo 'no JUnit XML (time limit): outcomes per file from the log' > $W/res/kernel-summary.txt
        grep -oE '(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) tests/[^:]+' $W/res/kernel-tests.txt | sort | uniq -c >> $W/res/kernel-summary.txt
      fi
      [ -f $W/res/kernel-tests.xml ] && python3 $REPO/tests/upstream/summarize.py $W/res/kernel-tests.xml >> $W/res/kernel-summary.txt 2>&1
      cat $W/res/sample.txt >> $W/res/kernel-summary.txt; fi
      cd $REPO; t=\$(date +%s)
      if [ \"${BT:-240}\" = 0 ]; then echo 'vllm fa2 benchmark skipped (BT=0)' | tee $W/res/bench-vllm-fa2.txt; else
      timeout ${BT:-240} python3 benchmarks/bench_vllm_fa2.py ${BQ:---quick} --json $W/res/bench-vllm-fa2.json > $W/res/bench-vllm-fa2.txt 2>&1
      echo \"vllm fa2 benchmark rc \$? wall \$(( \$(date +%s) - t )) s\" | tee -a $W/res/bench-vllm-fa2.txt; fi
      echo === TESTS DONE" > $W/tests.log 2>&1 < /dev/null &
  fi
  for i in $(seq 1 ${WAIT:-105}); do grep -q "^=== TESTS DONE" $W/tests.log 2>/dev/null && break; sleep 5; done
  cat $W/tests.log; cat $W/res/kernel-summary.txt 2>/dev/null | head -60
  grep -h "vLLM's attention backend\|passed\|failed\|skipped" $W/res/generate.txt 2>/dev/null | tail -8
  tail -3 $W/res/abi-check.txt $W/res/verify.txt 2>/dev/null; elapsed
  [ -s $W/jobs.jsonl ] && jobs_by_dir $W/jobs.jsonl > $W/res/jobs-by-dir.txt 2>&1 && cp $W/jobs.jsonl $W/res/
  cp $W/host.txt $W/build.log $W/res/ 2>/dev/null; cp $W/out/build-*.log $W/out/report-* $W/res/ 2>/dev/null
  tar czf $OUT/vllm-results.tgz -C $W res tests.log 2>/dev/null; ls -la $OUT
  ;;
fa2-ab)   # bash ci/gpu-vllm.sh fa2-ab SO: a rebuilt _vllm_fa2_C (e.g. with a new kernel patch) against the
          # installed wheel's, after `tests`: tests/vllm_gpu/test_vllm_fa2.py with it, and the prefill and
          # host benchmarks run with each library in turn (same machine, same run) -> $OUT/fa2-ab.tgz
  so="${2:?usage: bash ci/gpu-vllm.sh fa2-ab carry-fa/_vllm_fa2_C.abi3.so}"; d=$W/site/vllm/vllm_flash_attn
  [ -f $d/_vllm_fa2_C.abi3.so ] || { echo "no vllm installed under $W/site: run use/start first"; exit 1; }
  mkdir -p $W/ab && cp -n $d/_vllm_fa2_C.abi3.so $W/ab/wheel.so && cp "$so" $W/ab/new.so
  export PYTHONPATH=$W/site:$W/deps
  for lib in wheel new; do
    cp $W/ab/$lib.so $d/_vllm_fa2_C.abi3.so
    timeout ${BT:-150} python3 benchmarks/bench_vllm_fa2.py --quick --only prefill --only host ${ABX:-} \
      --json $W/ab/bench-$lib.json > $W/ab/bench-$lib.txt 2>&1; echo "bench ($lib) rc $?" >> $W/ab/bench-$lib.txt
  done
  timeout 300 python3 -m pytest -q -p no:cacheprovider -rfE tests/vllm_gpu/test_vllm_fa2.py > $W/ab/test-new.txt 2>&1
  echo "test_vllm_fa2 (new) rc $?" >> $W/ab/test-new.txt
  cp $W/ab/wheel.so $d/_vllm_fa2_C.abi3.so
  tail -3 $W/ab/test-new.txt; grep -h "prefill\|host " $W/ab/bench-*.txt
  tar czf ${OUT:-/tmp}/fa2-ab.tgz --exclude='*.so' -C $W ab
  ;;
probe)   # after use/tests: vLLM's rotary kernel tests (sampled, with tests/utils.py's imports:
         # anthropic, cloudpickle) and its v1 attention-backend tests, with the model config they
         # name (Qwen/Qwen3-0.6B) as a local directory (tests/vllm_gpu/hf_configs: the host has no
         # network; the tests build no weights from it) -> $OUT/probe-*.txt
  export PYTHONPATH=$W/site:$W/deps NCCL_NVLS_ENABLE=0 HF_HUB_OFFLINE=1
  [ -d $W/vt/vllm-tests ] || { mkdir -p $W/vt && tar xzf carry/vllm-tests.tar.gz -C $W/vt; }
  mkdir -p $W/vt/vllm-tests/Qwen ${OUT:=/tmp} && ln -sfn $REPO/tests/vllm_gpu/hf_configs/Qwen3-0.6B $W/vt/vllm-tests/Qwen/Qwen3-0.6B
  cd $W/vt/vllm-tests
  PYTHONPATH=$REPO/tests/upstream:$PYTHONPATH BW_VLLM_PER_GROUP=${PG:-8} BW_VLLM_SAMPLE_REPORT=$OUT/probe-rotary-sample.txt \
    timeout ${PT:-150} python3 -m pytest -v -p vllm_sampling -p no:cacheprovider -rfE -n ${XD:-8} --timeout=120 \
    tests/kernels/core/test_rotary_embedding.py tests/kernels/core/test_pos_encoding.py > $OUT/probe-rotary.txt 2>&1
  echo "rotary rc $?" >> $OUT/probe-rotary.txt
  timeout ${PT:-150} python3 -m pytest -v -p no:cacheprovider -rfE -n ${XD:-8} --timeout=120 \
    tests/v1/attention/test_attention_backends.py > $OUT/probe-backends.txt 2>&1
  echo "attention_backends rc $?" >> $OUT/probe-backends.txt
  for f in $OUT/probe-rotary.txt $OUT/probe-backends.txt; do
    echo "== $f"; grep -oE '(PASSED|FAILED|SKIPPED|ERROR) tests/[^:]+' $f | sort | uniq -c; tail -2 $f; done
  grep -h "^E  " $OUT/probe-*.txt | sort | uniq -c | sort -rn | head -12
  ;;
*) sed -n 2,20p "$0"; exit 2 ;;
esac
