"""cmake/TorchPackage.cmake with real CMake: two torch packages on CMAKE_PREFIX_PATH, the other one
first (as scikit-build-core orders the user's venv before pip's build env). A plain
find_package(Torch) takes the first; after blackwheel_pin_torch_package(<locked>) it takes the
locked one; blackwheel_check_torch_package refuses a torch found elsewhere, naming both."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CMAKE = shutil.which("cmake", path=sysconfig.get_path("scripts")) or shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake not found (pip install cmake)")


def _torch(site: Path) -> Path:
    """A stand-in torch package laid out like the wheel's: torch/share/cmake/Torch/TorchConfig.cmake
    setting TORCH_INSTALL_PREFIX the way torch's own does (three directories up)."""
    cfg = site / "torch" / "share" / "cmake" / "Torch"
    cfg.mkdir(parents=True)
    (cfg / "TorchConfig.cmake").write_text(
        'get_filename_component(TORCH_INSTALL_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)\n'
        'set(TORCH_FOUND TRUE)\n')
    return site / "torch"


def _configure(tmp: Path, body: str) -> subprocess.CompletedProcess:
    src = tmp / "proj"
    src.mkdir(exist_ok=True)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.26)\nproject(t NONE)\n"
        f'list(APPEND CMAKE_MODULE_PATH "{ROOT / "cmake"}")\ninclude(TorchPackage)\n' + body)
    venv, env = _torch(tmp / "venv-site"), _torch(tmp / "build-env-site")
    (tmp / "paths").write_text(f"{venv}\n{env}\n")
    return subprocess.run([CMAKE, "-S", str(src), "-B", str(tmp / "build"),
                           f"-DCMAKE_PREFIX_PATH={tmp / 'venv-site'};{tmp / 'build-env-site'}",
                           f"-DLOCKED={env}"], capture_output=True, text=True)


def test_without_the_pin_the_first_torch_on_the_prefix_path_wins(tmp_path):
    r = _configure(tmp_path, 'find_package(Torch REQUIRED)\nmessage(STATUS "found=${TORCH_INSTALL_PREFIX}")\n'
                             'blackwheel_check_torch_package("${LOCKED}" "${TORCH_INSTALL_PREFIX}")\n')
    assert r.returncode != 0
    out = " ".join((r.stdout + r.stderr).split())                      # CMake wraps its messages
    assert f"found={tmp_path / 'venv-site' / 'torch'}" in out          # the venv's, not the locked
    assert "not the locked torch at" in out and str(tmp_path / "build-env-site" / "torch") in out


def test_the_pin_makes_find_package_take_the_locked_torch(tmp_path):
    r = _configure(tmp_path, 'blackwheel_pin_torch_package("${LOCKED}")\nfind_package(Torch REQUIRED)\n'
                             'message(STATUS "found=${TORCH_INSTALL_PREFIX}")\n'
                             'blackwheel_check_torch_package("${LOCKED}" "${TORCH_INSTALL_PREFIX}")\n')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"found={tmp_path / 'build-env-site' / 'torch'}" in r.stdout


def test_a_locked_torch_without_its_cmake_package_is_refused(tmp_path):
    r = _configure(tmp_path, f'blackwheel_pin_torch_package("{tmp_path / "nowhere"}")\n')
    assert r.returncode != 0
    err = " ".join(r.stderr.split())             # CMake wraps its messages
    assert "has no" in err and "TorchConfig.cmake" in err and "torch-lock.toml" in err


def test_upstream_product_pins_before_and_checks_after():
    """The upstream-cmake path wires both: the pin at include time (before the upstream's
    find_package), the check in the deferred finish."""
    text = (ROOT / "cmake" / "UpstreamProduct.cmake").read_text()
    pin = text.index('blackwheel_pin_torch_package("${BW_LOCKED_TORCH_DIR}")')
    assert text.index("cmake_language(DEFER") > pin
    finish = text.index("function(blackwheel_upstream_finish)")
    assert text.index("blackwheel_check_torch_package(", finish) > finish
