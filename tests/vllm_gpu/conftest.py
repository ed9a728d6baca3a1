"""GPU tests of the installed vllm wheel's FA2 (products/vllm.toml family flash_attn_2:
vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so). Skipped, with the reason, where no CUDA GPU
is visible or the vllm wheel (with its FA2 library) is not installed."""
import pytest


def _skip_reason():
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU visible: run on the GPU host"
    try:
        from vllm.vllm_flash_attn import flash_attn_interface as fi
    except ImportError as e:
        return f"no vllm wheel with vllm_flash_attn installed ({e})"
    if not fi.FA2_AVAILABLE:
        return f"vllm_flash_attn has no FA2: {fi.FA2_UNAVAILABLE_REASON}"
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
