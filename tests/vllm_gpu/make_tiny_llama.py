"""Write a tiny Llama model directory with random weights, made here (no download).

  python tests/vllm_gpu/make_tiny_llama.py DIR [--seed 0]

config.json (LlamaForCausalLM: 2 layers, hidden 256, 4 heads / 2 KV heads, head_dim 64,
vocab 512), model.safetensors (bfloat16), generation_config.json, and a WordLevel
tokenizer built with `tokenizers` (tokenizer.json, tokenizer_config.json,
special_tokens_map.json). Same seed, same bytes. The weights are scaled so that the
next-token logits are far apart (the LM head and embeddings are large next to the
initializer's 0.02): greedy decoding then does not hinge on rounding, and vLLM's
tokens can be held equal to HF transformers' tokens for the same weights.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

VOCAB = 512
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]   # ids 0..3
WORDS = [f"w{i}" for i in range(VOCAB - len(SPECIAL))]

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
    "torch_dtype": "bfloat16",
    "initializer_range": 0.02,
}


def _weights(seed: int) -> dict:
    import torch
    g = torch.Generator().manual_seed(seed)
    c = CONFIG
    h, i, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    w = {"model.embed_tokens.weight": rnd(VOCAB, h, std=1.0),
         "model.norm.weight": torch.ones(h, dtype=torch.bfloat16),
         "lm_head.weight": rnd(VOCAB, h, std=0.5)}
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        w[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        w[p + "self_attn.q_proj.weight"] = rnd(nh * d, h, std=0.1)
        w[p + "self_attn.k_proj.weight"] = rnd(nkv * d, h, std=0.1)
        w[p + "self_attn.v_proj.weight"] = rnd(nkv * d, h, std=0.1)
        w[p + "self_attn.o_proj.weight"] = rnd(h, nh * d, std=0.05)
        w[p + "mlp.gate_proj.weight"] = rnd(i, h, std=0.05)
        w[p + "mlp.up_proj.weight"] = rnd(i, h, std=0.05)
        w[p + "mlp.down_proj.weight"] = rnd(h, i, std=0.05)
    return w


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    vocab = {t: n for n, t in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")   # joins word tokens with spaces
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens(SPECIAL)
    return tok


def write(out: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, "do_sample": False}, indent=2) + "\n")
    save_file(_weights(seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    _tokenizer().save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512,
        "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}, indent=2) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(write(a.dir, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
