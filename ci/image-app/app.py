"""The smallest application on the base layer: import the kernel pack and flash_attn
(blackwheel's import guard checks torch on the way) and say what is there."""
import blackwheel
import flash_attn
import torch

info = blackwheel.build_info()
print(f"app: blackwheel {info['blackwheel_version']} (archs {', '.join(info['archs'])}), "
      f"flash_attn {flash_attn.__version__}, torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")
