"""blackwheel_runtime: what every product wheel needs at run time, and nothing else.

The one implementation of "read the build record, compare the running torch and
GPU with it, explain the mismatch", shared by every product and by the factory:

  record.py      the build record (``<package>/_build_info.json``): schema, reader,
                 the installed products (found by their records)
  archs.py       arch strings (12.0a, 12.0f, 9.0a, 8.0+PTX) and which code runs on
                 which GPU                                                  (pure)
  torch_lock.py  the torch lock: compare a torch with it, the error text and
                 the pip command that fixes it                              (pure + torch facts)
  guard.py       the import-time guard: refuse a drifted torch before any
                 extension loads (TorchMismatchError, an ImportError)
  gpu.py         GPUs, compute capabilities and the driver of this machine (effects)
  doctor.py      `doctor`: every installed product's archs x this GPU/driver/torch
  info.py        `info`: a build record, human-readable
  cli.py         `python -m <product> doctor|info` (the products add their own commands)

How it is shipped. The factory imports it as ``blackwheel_runtime`` (it depends on
the runtime, never the reverse). Every product wheel carries its own copy as a
private subpackage next to its build record (``blackwheel/_runtime/``,
``flash_attn_2_cuda/_runtime/``): CMake installs this folder there at build time
(cmake/ProductBuild.cmake), the way scikit-build-core copies its editable hook
into the wheels it makes; in a checkout those folders are symlinks to this one.
A private copy, not a shared distribution, because products are installed with
``pip install --no-deps`` beside a torch (a required ``blackwheel-runtime`` would be
missing there), two products must never both install the same top-level files (pip
would let one overwrite, and its uninstall delete, the other's), and each product
keeps the guard it was built and tested with.

Rules that keep the copies working: standard library only (``packaging`` when
present), no torch import at module top (only ``guard.check_torch`` and ``gpu``
import it, when called), relative imports only (the copy lives under another
name), no import of a product or of the factory.
"""
