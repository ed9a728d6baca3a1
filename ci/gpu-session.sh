#!/usr/bin/env bash
# One GPU-host session in three calls of at most 10 min each (the device tool's limit),
# as run for docs/results/h200-2026-12-02-complete/:
#   bash ci/gpu-session.sh start     A: the complete flash_attn wheel for 9.0a (nice 19,
#                                    every compile job measured); B: the kernel pack for
#                                    9.0a, smoke, tests/gpu, bench_kernels, abi-check
#   bash ci/gpu-session.sh wait-fa   wait for A; per-TU memory/time summary
#   bash ci/gpu-session.sh fa-tests  ci/gpu-flash-attn.sh on A's wheel (upstream's suite
#                                    sampled, our GPU tests) + profile_flash_attn_host.py
# Needs, carried: carry/bundle-all.tar.gz (python -m blackwheel_factory sources --bundle)
# and carry/wheels/ (pyelftools, auditwheel). Results go to $OUT as tarballs.
set -u
W=/tmp/bw; REPO=$PWD
mkdir -p $W
export PYTHONUNBUFFERED=1
[ -x /usr/bin/g++ ] && export CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
if [ ! -d $W/tools ]; then python3 -m pip install -q --no-deps --no-index --target $W/tools carry/wheels/*.whl; fi
export PYTHONPATH=$W/tools
elapsed() { echo "[$(( $(date +%s) - $(cat $W/t0) )) s since start]"; }
fa_progress() { grep -a "\[[0-9]*/[0-9]*\]" $W/fa-out/build-*.log 2>/dev/null | tail -1 | cut -c1-60; wc -l < $W/fa-jobs.jsonl 2>/dev/null; }

case "$1" in
start)
  if [ ! -f $W/t0 ]; then
    date +%s > $W/t0
    { nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch;print(torch.__version__)"; which g++ nvcc; nvcc --version | tail -1; g++ --version | head -1; git -C $REPO log --oneline -1 2>/dev/null; } > $W/host.txt 2>&1
    # A: the complete flash_attn wheel for 9.0a, every compile job measured, at low priority
    setsid nohup env BW_SCRATCH=$W/fa-scratch MAX_JOBS=16 \
      CMAKE_CUDA_COMPILER_LAUNCHER=$REPO/benchmarks/nvcc_peak_launcher.py BLACKWHEEL_JOB_LOG=$W/fa-jobs.jsonl \
      bash -c "t=\$(date +%s); nice -n 19 bash ci/offline-build.sh carry/bundle-all.tar.gz $W/fa-out 'flash-attn|9.0a'; echo \"fa build wall \$(( \$(date +%s) - t )) s on \$(nproc) cores\"; echo === FA DONE" \
      > $W/fa.log 2>&1 < /dev/null &
    # B: the kernel pack for 9.0a, then its GPU tests and benchmarks
    setsid nohup bash -c "
      t=\$(date +%s); BW_SCRATCH=$W/pack-scratch MAX_JOBS=8 bash ci/offline-build.sh carry/bundle-all.tar.gz $W/pack-out 'all|9.0a'
      echo \"pack build wall \$(( \$(date +%s) - t )) s\"
      whl=\$(ls $W/pack-out/wheels-*/blackwheel-*.whl | head -1); ls -la \$whl
      mkdir -p $W/site && python3 -m pip install -q --no-deps --no-index --target $W/site \$whl
      cd /tmp
      PYTHONPATH=$W/site python3 -m blackwheel smoke > $W/pack-out/smoke.txt 2>&1; tail -3 $W/pack-out/smoke.txt
      PYTHONPATH=$W/site:$W/tools python3 -m pytest -q -p no:cacheprovider -rfEs $REPO/tests/gpu > $W/pack-out/pytest-gpu.txt 2>&1; tail -3 $W/pack-out/pytest-gpu.txt
      PYTHONPATH=$W/site python3 $REPO/benchmarks/bench_kernels.py --out-dir $W/pack-out/bench > $W/pack-out/bench.txt 2>&1; tail -3 $W/pack-out/bench.txt
      PYTHONPATH=$W/site:$REPO/python:$W/tools python3 -m blackwheel_factory abi-check \$whl > $W/pack-out/abi-check.txt 2>&1; tail -2 $W/pack-out/abi-check.txt
      echo === PACK DONE" > $W/pack.log 2>&1 < /dev/null &
  fi
  for i in $(seq 1 ${WAIT:-100}); do grep -q "^=== PACK DONE" $W/pack.log 2>/dev/null && break; sleep 5; done
  cat $W/host.txt; cat $W/pack.log | tail -30; elapsed; fa_progress
  grep -a "host \|overhead" $W/pack-out/bench.txt 2>/dev/null | head -12
  tar czf $OUT/pack-results.tgz -C $W pack-out/smoke.txt pack-out/pytest-gpu.txt pack-out/bench.txt pack-out/bench pack-out/abi-check.txt pack.log host.txt $(cd $W && ls pack-out/report-* pack-out/build-*.log 2>/dev/null) 2>/dev/null
  ;;
wait-fa)
  for i in $(seq 1 ${WAIT:-110}); do grep -q "^=== FA DONE" $W/fa.log 2>/dev/null && break; sleep 5; done
  tail -5 $W/fa.log; elapsed; fa_progress
  python3 $REPO/benchmarks/nvcc_peak_launcher.py --summarize $W/fa-jobs.jsonl 2>/dev/null
  ;;
fa-tests)
  if [ ! -f $W/fa-tests-started ]; then
    touch $W/fa-tests-started
    setsid nohup bash -c "
      cd $REPO
      mkdir -p $W/src && tar xzf carry/bundle-all.tar.gz -C $W/src
      BW_UPSTREAM_TESTS=\$(ls -d $W/src/trees/flash-attn-*/tests | head -1) BLACKWHEEL_MANYLINUX=manylinux_2_39 \
      BW_UPSTREAM_PER_GROUP=${PG:-5} BW_UPSTREAM_XDIST=${XD:-8} BW_UPSTREAM_TIMEOUT=${UT:-420} BW_BENCH=0 \
        bash ci/gpu-flash-attn.sh $W/fa-test-out \$(ls $W/fa-out/wheels-*/flash_attn-*.whl | head -1)
      s=\$(mktemp -d); python3 -m pip install -q --no-deps --no-index --target \$s \$(ls $W/fa-out/wheels-*/flash_attn-*.whl | head -1)
      cd /tmp; PYTHONPATH=\$s python3 $REPO/benchmarks/profile_flash_attn_host.py --calls 1000 > $W/fa-test-out/profile-host.txt 2>&1; cd $REPO
      echo === FA TESTS DONE" > $W/fa-tests.log 2>&1 < /dev/null &
  fi
  for i in $(seq 1 ${WAIT:-110}); do grep -q "^=== FA TESTS DONE" $W/fa-tests.log 2>/dev/null && break; sleep 5; done
  tail -40 $W/fa-tests.log; elapsed
  python3 $REPO/benchmarks/nvcc_peak_launcher.py --summarize $W/fa-jobs.jsonl > $W/fa-out/jobs-summary.txt 2>&1
  cp $W/fa-jobs.jsonl $W/fa-out/ 2>/dev/null
  tar czf $OUT/fa-results.tgz -C $W --exclude='fa-test-out/src' fa-test-out fa.log fa-tests.log fa-out/jobs-summary.txt fa-out/fa-jobs.jsonl $(cd $W && ls fa-out/report-* 2>/dev/null) 2>/dev/null
  ls -la $OUT
  ;;
esac
