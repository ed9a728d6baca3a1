"""`python -m flash_attn_2_cuda doctor|info`: the runtime's commands, the same as
`python -m blackwheel doctor|info` (every installed product's record, one code path)."""
from ._runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m flash_attn_2_cuda", default_product="flash-attn"))
