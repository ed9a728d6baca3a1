"""GPU tests of the installed flash_attn wheel (products/flash-attn.toml).

Skipped, with the reason, where no CUDA GPU is visible or where the flash_attn
being imported is not a built wheel. The GPU host runs them through
ci/gpu-flash-attn.sh; they run the arch path the GPU has (sm_90 on an H100/H200)."""
import pytest


def _skip_reason():
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU visible: run on the GPU host (ci/gpu-flash-attn.sh)"
    try:
        import flash_attn_2_cuda
    except ImportError as e:
        return f"no flash_attn wheel installed ({e})"
    if not flash_attn_2_cuda.build_info():
        return "flash_attn_2_cuda has no build record (a source checkout, not the wheel)"
    return None


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    reason = None
    for it in items:
        if str(it.fspath).startswith(here):
            it.add_marker(pytest.mark.gpu)
            reason = reason or _skip_reason()
            if reason:
                it.add_marker(pytest.mark.skip(reason=reason))
