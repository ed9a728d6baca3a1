"""This machine's GPUs, their compute capabilities and the driver (effects), and
what a record's cubins need of the driver (pure). Nothing here raises for a
missing GPU or driver: absence is a fact to report."""
from __future__ import annotations

from dataclasses import dataclass

from . import torch_lock as L

# Minimum driver branch per CUDA major: cubins built by any 13.x nvcc run on a
# driver >= 580 (CUDA minor version compatibility; PTX JIT needs the matching
# minor). Source: CUDA Toolkit release notes, "CUDA Driver" table.
MIN_DRIVER = {13: "580", 12: "525"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    major: int
    minor: int


@dataclass(frozen=True)
class Machine:
    """What doctor compares the records with."""
    facts: L.TorchFacts | None        # the running torch (None: not importable)
    torch_error: str
    gpus: list[Gpu] | None            # None: unknown (no torch)
    gpu_note: str                     # why there are none
    driver_cuda: tuple[int, int] | None


def parse_cuda(v: str | None) -> tuple[int, int] | None:
    if not v:
        return None
    parts = str(v).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def cubin_cuda(info: dict) -> tuple[int, int] | None:
    """CUDA version of the cubins: the nvcc that built them (else the lock's CUDA)."""
    return (parse_cuda((info.get("toolchain") or {}).get("nvcc_version"))
            or parse_cuda(((info.get("torch") or {}).get("lock") or {}).get("cuda")))


def probe() -> Machine:
    """The running torch, the visible GPUs and the driver of this machine."""
    facts, err = L.import_torch_facts()
    if facts is None:
        return Machine(None, err, None, "torch is not importable", driver_cuda())
    import torch
    gpus: list[Gpu] = []
    note = ""
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                major, minor = torch.cuda.get_device_capability(i)
                gpus.append(Gpu(i, torch.cuda.get_device_name(i), major, minor))
        else:
            note = ("torch.cuda.is_available() is False" +
                    ("" if torch.version.cuda else ": this torch is CPU-only"))
    except Exception as e:  # a driver that fails to initialise
        note = f"CUDA initialisation failed: {e}"
    return Machine(facts, "", gpus, note, driver_cuda())


def driver_cuda() -> tuple[int, int] | None:
    """cudaDriverGetVersion through the CUDA runtime torch loads (0 = no driver)."""
    import ctypes
    for name in ("libcudart.so.13", "libcudart.so.12", "libcuda.so.1"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        fn = getattr(lib, "cudaDriverGetVersion", None) or getattr(lib, "cuDriverGetVersion", None)
        if fn is None:
            continue
        v = ctypes.c_int(0)
        if fn(ctypes.byref(v)) == 0 and v.value > 0:
            return v.value // 1000, (v.value % 1000) // 10
    return None
