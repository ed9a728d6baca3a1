"""Greedy generation on the tiny Llama: the prompts, HF transformers' reference, and
vLLM's run (in its own process: `python greedy.py vllm MODEL_DIR OUT.json [BACKEND]`).

Prompts are token ids (fixed seed) so that the comparison holds the model to the model,
plus one text prompt that goes through both tokenizers (its ids are compared too)."""
from __future__ import annotations

import json
import re
import sys

NEW_TOKENS = 24
TEXT_PROMPT = "w1 w22 w333 w4 w55 w66 w7 w8"
MAX_MODEL_LEN = 256


def token_prompts(seed: int = 1234) -> list[list[int]]:
    import random
    r = random.Random(seed)
    return [[1] + [r.randrange(4, 512) for _ in range(n - 1)] for n in (5, 16, 33, 97)]


def hf_greedy(model_dir: str, prompts: list[list[int]], dtype: str, device: str) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
    gc = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0,
                          eos_token_id=None, pad_token_id=3, bos_token_id=1)
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p], device=device)
            g = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc)
            out.append(g[0, len(p):].tolist())
    del model
    return out


def hf_text_ids(model_dir: str) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir)(TEXT_PROMPT)["input_ids"]


BACKEND_LINE = re.compile(r"Using (?:backend )?(\S+?)\.?(?: attention)? backend(?: out of potential backends: (.*))?")


def vllm_greedy(model_dir: str, out_json: str, backend: str | None, dtype: str) -> None:
    """Runs in its own process (one engine per process, logs captured by the parent)."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    kw = {} if backend in (None, "", "auto") else {"attention_backend": backend}
    llm = LLM(model=model_dir, tokenizer=model_dir, dtype=dtype, enforce_eager=True, seed=0,
              gpu_memory_utilization=0.15, max_model_len=MAX_MODEL_LEN, max_num_seqs=8, **kw)
    sp = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    prompts = token_prompts()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sp, use_tqdm=False)
    text = llm.generate([TEXT_PROMPT], sp, use_tqdm=False)[0]
    json.dump({"tokens": [list(o.outputs[0].token_ids) for o in outs],
               "text_prompt_ids": list(text.prompt_token_ids), "text_tokens": list(text.outputs[0].token_ids),
               "text": text.outputs[0].text}, open(out_json, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "vllm":
        vllm_greedy(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None,
                    sys.argv[5] if len(sys.argv) > 5 else "bfloat16")
    elif sys.argv[1] == "hf":   # python greedy.py hf MODEL_DIR [dtype] [device]: the reference alone
        dt = sys.argv[3] if len(sys.argv) > 3 else "float32"
        dev = sys.argv[4] if len(sys.argv) > 4 else "cpu"
        print(json.dumps({"tokens": hf_greedy(sys.argv[2], token_prompts(), dt, dev),
                          "text_prompt_ids": hf_text_ids(sys.argv[2])}))
