#!/usr/bin/env python3
"""Text-embedding speed in HF transformers: the comparison for `sidtool bench embed` / `sidtool embed`.

  python3 -m pip install -r bench/requirements.txt
  bash scripts/fetch-test-assets.sh        # the real Qwen3 tokenizer in test-assets/qwen-tokenizer/
  python3 bench/transformers_embed_bench.py make-model --out qwen3-0.6b-random \\
      --tokenizer test-assets/qwen-tokenizer/tokenizer.json
  python3 bench/transformers_embed_bench.py bench --model qwen3-0.6b-random --n 64 --tokens 64
  sidtool bench embed --model qwen3-0.6b-random --n 64 --tokens 64 --warmup 64
  python3 bench/transformers_embed_bench.py bench --model qwen3-0.6b-random --n 4096 --tokens 64 \
      --batch 1024 --device cuda --dtype bf16                                   # on a GPU

`make-model` saves a randomly initialised Qwen3 (speed does not depend on weight values) of the
Qwen3-Embedding-0.6B shape by default (hidden 1024, 28 layers, 16 query / 8 KV heads, head dim
128, MLP 3072, vocab 151 669, RoPE θ 1e6, RMSNorm ε 1e-6; seed 0) as safetensors, and next to it
the given tokenizer.json with Qwen3-Embedding's post-processor (append `<|endoftext|>`), so
sidtool and transformers read the same directory. Smaller shapes through the flags. --device cuda
only makes the random initialisation faster (the values then differ from the CPU's for the same
seed); the file is the same f32 safetensors layout either way. It needs no pyarrow.

`bench` is the measurement `sidtool bench embed` is compared with: N items of exactly T tokens
(random ids, `<|endoftext|>` last), weights in --dtype (f32 by default; bf16, f16) on --device
(cpu by default; cuda), `attn_implementation="sdpa"`, `torch.set_num_threads` (the CPU's threads),
`torch.inference_mode`, in batches of --batch rows (default: all N in one batch), last-token
pooling and L2 normalisation, timed after --warmup warm-up items (default one batch). The ids are
drawn on the CPU (the same for every device) and moved to the device before the clock starts; on
cuda the clock stops after `torch.cuda.synchronize()`. Prints items/s, tokens/s and GFLOP/s of
the projection and attention matmuls (2 per multiply-add, the same count as sidtool's report),
with the device and dtype, as one JSON line. It needs no pyarrow.

`catalogue` embeds item text as a plain transformers user would: AutoTokenizer with
padding_side="left", batches of --batch items in file order padded to the longest, last-token
pooling, L2 normalisation; it reports the compute time alone and the padding, and with --out
writes the vectors as an embeddings Parquet file (item_id, embedding) to compare with sidtool's.
It runs in f32 on the CPU and needs pyarrow.
"""
import argparse
import json
import os
import shutil
import time

DTYPES = ("f32", "bf16", "f16")


def torch_dtype(name):
    import torch

    return {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[name]


def check_device(device):
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")


def make_model(a):
    import torch
    import transformers

    check_device(a.device)
    torch.manual_seed(a.seed)
    cfg = transformers.Qwen3Config(
        hidden_size=a.hidden_size, num_hidden_layers=a.layers, num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads, head_dim=a.head_dim, intermediate_size=a.intermediate_size,
        vocab_size=a.vocab_size, tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6)
    with torch.device(a.device):
        model = transformers.Qwen3Model(cfg)
    model = model.to("cpu", torch.float32)  # f32 safetensors, whatever the device it was built on
    model.save_pretrained(a.out)
    if a.tokenizer:
        with open(a.tokenizer) as f:
            tok = json.load(f)
        end = next((t for t in tok.get("added_tokens", []) if t["content"] == "<|endoftext|>"), None)
        if end is None:
            raise SystemExit(f"{a.tokenizer} has no <|endoftext|> token")
        eos = {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}
        tok["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, eos],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, eos,
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [end["id"]], "tokens": ["<|endoftext|>"]}},
        }
        with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
            json.dump(tok, f, ensure_ascii=False)
        side = os.path.join(os.path.dirname(a.tokenizer), "tokenizer_config.json")
        if os.path.exists(side):
            shutil.copy(side, os.path.join(a.out, "tokenizer_config.json"))
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model": a.out, "parameters": params, "tokenizer": bool(a.tokenizer)}))


def load(model_dir, threads, device="cpu", dtype="f32"):
    import torch
    import transformers

    check_device(device)
    torch.set_num_threads(threads)
    model = transformers.AutoModel.from_pretrained(model_dir, dtype=torch_dtype(dtype), attn_implementation="sdpa")
    return model.to(device).eval()


def end_token_id(model_dir, fallback):
    path = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(path):
        with open(path) as f:
            for t in json.load(f).get("added_tokens", []):
                if t["content"] == "<|endoftext|>":
                    return t["id"]
    return fallback


def matmul_flops(cfg, tokens, t):
    """Projection and attention matmul FLOPs of `tokens` tokens in items of t tokens (as sidtool counts)."""
    h, hd = cfg.hidden_size, cfg.head_dim
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    proj = h * (nh + 2 * nkv) * hd + nh * hd * h + 3 * h * cfg.intermediate_size
    attn = 2 * nh * hd * t
    return 2.0 * tokens * (proj + attn) * cfg.num_hidden_layers


def bench(a):
    import torch

    model = load(a.model, a.threads, a.device, a.dtype)
    end = end_token_id(a.model, a.end_token_id)
    batch = a.batch or a.n
    warmup = batch if a.warmup is None else a.warmup
    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(0, model.config.vocab_size, (a.n + warmup, a.tokens), generator=g)
    ids[:, -1] = end
    ids = ids.to(a.device)
    cuda = a.device == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def embed(rows):
        out = model(input_ids=rows, attention_mask=torch.ones_like(rows)).last_hidden_state[:, -1]
        return torch.nn.functional.normalize(out, dim=-1)

    with torch.inference_mode():
        for b0 in range(a.n, a.n + warmup, batch):
            embed(ids[b0:min(b0 + batch, a.n + warmup)])
        sync()
        clock = time.perf_counter()
        for b0 in range(0, a.n, batch):
            embed(ids[b0:min(b0 + batch, a.n)])
        sync()
        seconds = time.perf_counter() - clock
    print(json.dumps({
        "tool": "transformers", "transformers": __import__("transformers").__version__, "torch": torch.__version__,
        "model": a.model, "device": a.device, "dtype": a.dtype, "threads": torch.get_num_threads(),
        "items": a.n, "tokens_per_item": a.tokens,
        "batch_rows": batch, "warmup_items": warmup, "seconds": seconds, "items_per_s": a.n / seconds,
        "tokens_per_s": a.n * a.tokens / seconds,
        "gflops_per_s": matmul_flops(model.config, a.n * a.tokens, a.tokens) / seconds / 1e9}))


def catalogue(a):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    import transformers

    t_start = time.perf_counter()
    table = pq.read_table(a.items)
    if a.limit:
        table = table.slice(0, a.limit)
    rows = table.to_pylist()
    texts = [a.template.format(**r) for r in rows]
    tok = transformers.AutoTokenizer.from_pretrained(a.model, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>"
    model = load(a.model, a.threads)
    vectors, real, padded, compute = [], 0, 0, 0.0
    with torch.inference_mode():
        for b0 in range(0, len(texts), a.batch):
            enc = tok(texts[b0:b0 + a.batch], padding=True, truncation=True, max_length=a.max_length,
                      return_tensors="pt")
            real += int(enc["attention_mask"].sum())
            padded += enc["attention_mask"].numel()
            clock = time.perf_counter()
            out = model(**enc).last_hidden_state[:, -1]
            vectors.append(torch.nn.functional.normalize(out, dim=-1))
            compute += time.perf_counter() - clock
    x = torch.cat(vectors).numpy().astype(np.float32)
    if a.out:
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])
        pq.write_table(pa.table({"item_id": table.column(a.id_column), "embedding": emb}), a.out)
    print(json.dumps({
        "tool": "transformers", "transformers": transformers.__version__, "items": len(texts),
        "batch_rows": a.batch, "threads": torch.get_num_threads(), "compute_s": compute,
        "items_per_s": len(texts) / compute, "real_tokens": real, "padded_tokens": padded - real,
        "padding_share": (padded - real) / padded, "whole_process_s": time.perf_counter() - t_start}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    m = sp.add_parser("make-model", help="save a randomly initialised Qwen3 (default: the 0.6B shape)")
    m.add_argument("--out", required=True)
    m.add_argument("--tokenizer", help="tokenizer.json to copy in, given Qwen3-Embedding's post-processor")
    m.add_argument("--hidden-size", type=int, default=1024)
    m.add_argument("--layers", type=int, default=28)
    m.add_argument("--heads", type=int, default=16)
    m.add_argument("--kv-heads", type=int, default=8)
    m.add_argument("--head-dim", type=int, default=128)
    m.add_argument("--intermediate-size", type=int, default=3072)
    m.add_argument("--vocab-size", type=int, default=151669)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to initialise the weights (cuda is faster; saved in f32 either way)")
    b = sp.add_parser("bench", help="N random items of exactly T tokens (sidtool bench embed's workload)")
    b.add_argument("--model", required=True)
    b.add_argument("--n", type=int, default=64)
    b.add_argument("--tokens", type=int, default=64)
    b.add_argument("--batch", type=int, default=0, help="rows per forward (default: all N)")
    b.add_argument("--warmup", type=int, default=None, help="warm-up items (default: one batch)")
    b.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CPU's threads)")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    b.add_argument("--dtype", choices=DTYPES, default="f32", help="the weights' and activations' type")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--end-token-id", type=int, default=151643, help="when the model has no tokenizer.json")
    c = sp.add_parser("catalogue", help="item text from a Parquet file, as a plain transformers user embeds it")
    c.add_argument("--model", required=True)
    c.add_argument("--items", required=True)
    c.add_argument("--template", required=True, help='Python format string over columns, e.g. "{title}. Genres: {genres}"')
    c.add_argument("--id-column", default="item_id")
    c.add_argument("--limit", type=int, default=0, help="first N items only (0 = all)")
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--max-length", type=int, default=512)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--out", help="write the vectors here (Parquet: item_id, embedding)")
    a = ap.parse_args()
    {"make-model": make_model, "bench": bench, "catalogue": catalogue}[a.cmd](a)


if __name__ == "__main__":
    main()
