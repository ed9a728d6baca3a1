"""Build outputs shared by several test modules, made once per session (CI time is the
budget): the local marlin_fp4 build (test_wheel_build.py's variant "a", which the farm's
wheel must equal: test_farm.py), the marlin_fp4 pair (test_wheel_build.py) and the
reduced flash_attn wheel (test_flash_attn_wheel.py); test_image.py builds the base image
from the pair's first wheel and the flash_attn wheel."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_wheel_build import _checkout_copy, build_variant  # noqa: E402


@pytest.fixture(scope="session")
def marlin_local_build(tmp_path_factory):
    """The marlin_fp4 kernel set for 12.0a, built locally with the compiler cache off
    (test_wheel_build.VARIANTS["a"]): (wheel, (checkout, build dir, source cache, HOME))."""
    return build_variant(tmp_path_factory.mktemp("marlin-local"), "a")


@pytest.fixture(scope="session")
def two_builds(tmp_path_factory, marlin_local_build):
    """The marlin_fp4 kernel pack built twice, from checkouts that differ in every path;
    variant "a" is the session's local build above."""
    wheels, facts = [marlin_local_build[0]], [marlin_local_build[1]]
    wheel, fact = build_variant(tmp_path_factory.mktemp("wheelbuild"), "b")
    wheels.append(wheel)
    facts.append(fact)
    # the two builds really differ: every path, and every path's length
    for x, y in zip(*facts):
        assert x != y and len(x) != len(y), (x, y)
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
