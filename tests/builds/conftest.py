"""Builds shared by several build tests (one per session: CI has 2 cores)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def marlin_local_build(tmp_path_factory):
    """The marlin_fp4 kernel set for 12.0a, built locally with the compiler cache off
    (test_wheel_build.VARIANTS["a"]): (wheel, (checkout, build dir, source cache, HOME))."""
    from test_wheel_build import build_variant
    return build_variant(tmp_path_factory.mktemp("marlin-local"), "a")
