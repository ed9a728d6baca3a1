"""Build outputs shared by several test modules, made once per session (CI time is the
budget): the marlin_fp4 kernel-pack pair (test_wheel_build.py) and the reduced flash_attn
wheel (test_flash_attn_wheel.py); test_image.py builds the base image from both."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_wheel_build import VARIANTS, _build, _checkout_copy, _seeded_cache, _wheel  # noqa: E402


@pytest.fixture(scope="session")
def two_builds(tmp_path_factory):
    """The marlin_fp4 kernel pack built twice, from checkouts that differ in every path."""
    root = tmp_path_factory.mktemp("wheelbuild")
    wheels, facts = [], []
    for name, v in VARIANTS.items():
        src = _checkout_copy(root / name / v["src"])
        cache = _seeded_cache(root / name / v["cache"])
        home = root / name / v["home"]
        home.mkdir(parents=True)
        out = root / name / "dist"
        r = _build(src, out, root / name / v["build"], "12.0a", BLACKWHEEL_CACHE=str(cache),
                   HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
        wheels.append(_wheel(out))
        facts.append((str(src), str(root / name / v["build"]), str(cache), str(home)))
    # the two builds really differ: every path, and every path's length
    for x, y in zip(*facts):
        assert x != y and len(x) != len(y), (x, y)
    for cache in (root / n / v["cache"] for n, v in VARIANTS.items()):
        assert list((cache / "manifests").glob("vllm-*.json")), f"{cache} was not the build's cache"
    return wheels


@pytest.fixture(scope="session")
def fa_wheel(tmp_path_factory) -> Path:
    """The reduced flash_attn wheel: head dim 32, fwd+bwd, bf16, 12.0a (about 10 min)."""
    import subprocess
    root = tmp_path_factory.mktemp("fawheel")
    src = _checkout_copy(root / "src")
    env = dict(os.environ, BLACKWHEEL_FA_HEAD_DIMS="32", BLACKWHEEL_FA_DIRECTIONS="fwd,bwd",
               BLACKWHEEL_FA_DTYPES="bf16", BLACKWHEEL_ARCHS="12.0a", BLACKWHEEL_COMPILER_CACHE="off",
               PYTHONPATH=str(src / "python"))
    env.pop("SOURCE_DATE_EPOCH", None)
    r = subprocess.run([sys.executable, "-m", "blackwheel_factory", "wheel", "flash-attn", "-w",
                        str(root / "dist"), "--", "--no-build-isolation", "-v"],
                       capture_output=True, text=True, env=env, cwd=src)
    assert r.returncode == 0, (r.stdout + r.stderr)[-8000:]
    wheels = sorted((root / "dist").glob("flash_attn-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
