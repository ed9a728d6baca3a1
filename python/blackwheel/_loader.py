"""Load each built kernel family's extension into torch (ops appear under
torch.ops.blackwheel). Runs only after the drift guard accepted the running torch.

The extensions use no Python C-API: torch.ops.load_library dlopens them and
their static initialisers register the ops with the dispatcher.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_LOADED: dict[str, Path] = {}


def library_path(info: dict, family: str) -> Path:
    return _HERE / info["kernels"][family]["library"]


def load_extensions(info: dict) -> dict[str, Path]:
    import torch

    for family in info.get("kernels", {}):
        if family in _LOADED:
            continue
        path = library_path(info, family)
        if not path.is_file():
            raise ImportError(
                f"blackwheel: {path.name} (kernel set '{family}') is missing from the installation "
                f"at {_HERE}; reinstall the wheel (pip install --force-reinstall --no-deps <wheel>)")
        try:
            torch.ops.load_library(str(path))
        except OSError as e:
            raise ImportError(
                f"blackwheel: cannot load {path.name} (kernel set '{family}') into torch "
                f"{torch.__version__}: {e}\nRun `python -m blackwheel_factory abi-check {path}` (in a "
                f"blackwheel checkout, PYTHONPATH=python) to see which "
                f"symbols this torch lacks, and `python -m blackwheel doctor`.") from e
        _LOADED[family] = path
    return dict(_LOADED)
