"""benchmarks/nvcc_peak_launcher.py: runs the job unchanged, passes its exit code
through, and records the peak memory of the job's largest process."""
import json
import subprocess
import sys
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parents[2] / "benchmarks" / "nvcc_peak_launcher.py"


def _run(tmp_path, *argv):
    log = tmp_path / "jobs.jsonl"
    r = subprocess.run([sys.executable, str(LAUNCHER), *argv], env={"BLACKWHEEL_JOB_LOG": str(log), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True)
    return r, [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_records_the_peak_of_a_grandchild_and_the_source(tmp_path):
    # the job (a shell) runs a child that holds ~300 MiB: nvcc's cicc/ptxas are such children
    code = "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"
    r, rows = _run(tmp_path, "/bin/sh", "-c", f'{sys.executable} -c "{code}"', "-c", "flash_fwd_hdim64_bf16_causal_sm80.cu")
    assert r.returncode == 0, r.stderr
    (row,) = rows
    assert row["rc"] == 0 and row["peak_rss_mib"] >= 300
    assert row["source"] == "flash_fwd_hdim64_bf16_causal_sm80.cu"


def test_passes_the_exit_code_through_and_summarizes_by_kind(tmp_path):
    r, rows = _run(tmp_path, "/bin/sh", "-c", "exit 3", "-c", "flash_bwd_hdim256_fp16_sm80.cu")
    assert r.returncode == 3 and rows[0]["rc"] == 3
    out = subprocess.run([sys.executable, str(LAUNCHER), "--summarize", str(tmp_path / "jobs.jsonl")],
                         capture_output=True, text=True).stdout
    assert out.splitlines()[1].startswith("bwd ")
    assert "1 job(s) failed: flash_bwd_hdim256_fp16_sm80.cu" in out
