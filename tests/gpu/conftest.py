"""GPU tests: skipped, with the reason shown, where no CUDA GPU is visible or the
blackwheel being imported has no built kernels (a source checkout)."""
import pytest

NO_GPU = "no CUDA GPU visible: GPU tests run on the GPU host (python -m blackwheel smoke)"
NO_KERNELS = ("blackwheel has no built kernels (source checkout, no _build_info.json): "
              "install the wheel and run pytest from outside the source tree")


def _skip_reason():
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        return f"torch is not importable ({e})"
    if not torch.cuda.is_available():
        return NO_GPU
    import blackwheel
    if blackwheel.build_info() is None:
        return NO_KERNELS
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


@pytest.fixture(scope="session")
def cuda_device():
    import torch
    return torch.device("cuda", torch.cuda.current_device())
