"""pytest plugin for counting vLLM's kernel test ids on a machine without a GPU.

Only for `pytest --collect-only` (never for running tests): vLLM's kernel test
modules ask the platform at import time (VllmConfig(), set_random_seed,
capability checks in skipif marks) and read torch.ops._C at module level. This
plugin makes vLLM's platform a CUDA platform that reports BW_FAKE_CAPABILITY
(default 9.0, the GPU host's H100/H200) with BW_FAKE_DEVICE_COUNT GPUs (default 1: test
files parametrize over cuda:0..N-1) and loads the wheel's extensions, so
collection yields the ids a GPU host would parametrize. The extensions need
libcuda.so.1 to load: give a stub directory on LD_LIBRARY_PATH on a CPU machine.

  pytest --collect-only -q -p vllm_cpu_collect tests/kernels/...
"""
from __future__ import annotations

import os


def pytest_configure(config):
    import torch
    import vllm.platforms as platforms
    from vllm.platforms.cuda import NonNvmlCudaPlatform
    from vllm.platforms.interface import DeviceCapability

    major, minor = (int(x) for x in os.environ.get("BW_FAKE_CAPABILITY", "9.0").split("."))
    count = int(os.environ.get("BW_FAKE_DEVICE_COUNT", "1"))
    torch.cuda.device_count = lambda: count

    class CountingCudaPlatform(NonNvmlCudaPlatform):
        @classmethod
        def get_device_capability(cls, device_id: int = 0):
            return DeviceCapability(major=major, minor=minor)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return "counting-only"

        @classmethod
        def manual_seed_all(cls, seed: int) -> None:
            torch.manual_seed(seed)

        @classmethod
        def device_count(cls) -> int:
            return count

    platforms.current_platform = CountingCudaPlatform()
    import vllm._custom_ops  # noqa: F401  (loads _C_stable_libtorch / _moe_C_stable_libtorch)
