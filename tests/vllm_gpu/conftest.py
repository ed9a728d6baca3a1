"""GPU tests of an installed vllm wheel (products/vllm.toml): marked `gpu`, and skipped,
with the reason, where no CUDA GPU is visible or vllm is not importable (CI: no GPU; the
GPU host runs them through ci/gpu-vllm.sh with the wheel and carry/vllm-deps installed)."""
import pytest


def _skip_reason():
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        return f"torch is not importable ({e})"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible: run on the GPU host (bash ci/gpu-vllm.sh tests)"
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        return f"vllm is not importable ({e}): install the wheel and carry/vllm-deps (ci/gpu-vllm.sh)"
    return None


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    mine = [it for it in items if str(it.fspath).startswith(here)]
    if not mine:
        return
    reason = _skip_reason()
    for it in mine:
        it.add_marker(pytest.mark.gpu)
        if reason:
            it.add_marker(pytest.mark.skip(reason=reason))
