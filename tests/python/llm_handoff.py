"""The LLM hand-off as a user meets it, with transformers from PyPI (no torch).

Builds with the real Qwen3 tokenizer folder standing in for the LLM (its config.json says 151 936
embedding rows, as Qwen3-0.6B's does), then checks that:
- AutoTokenizer.from_pretrained(out) loads it with eos/pad/chat template intact;
- every item's SID encodes to its ids from sid_tokens.json and decodes back; prompts get no
  appended end token;
- save_pretrained -> from_pretrained round-trips;
- the resize advice is never below the model's rows, and sid_embeddings.safetensors holds rows
  for every new id near the mean of the tokenizer's rows;
- every export format loads as MiniOneRec/LC-Rec/LETTER (json) and TIGER-style trainers (numpy)
  read it;
- the Python snippets of docs/llm-integration.md run (numpy standing in for torch) and the trie
  processor only ever lets complete, real SIDs out, with markers and without.

Run by scripts/python-tests.sh: SIDTOOL_BIN names the binary; the repository root is the cwd.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import transformers
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer

ROOT = os.getcwd()
BIN = os.environ.get("SIDTOOL_BIN", os.path.join(ROOT, "target/release/sidtool"))
QWEN = os.path.join(ROOT, "test-assets/qwen-tokenizer")
ROWS, DIM, BASE = 151_936, 16, 151_669


def sidtool(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"sidtool {' '.join(args)} failed:\n{r.stderr}"
    return r


def make_llm(d):
    """The real Qwen3 tokenizer folder plus a config.json and embeddings shaped like Qwen3-0.6B's."""
    for f in os.listdir(QWEN):
        shutil.copy(os.path.join(QWEN, f), d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                   "vocab_size": ROWS, "hidden_size": DIM}, f)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(ROWS, DIM)).astype(np.float32) + np.arange(DIM, dtype=np.float32)
    emb[BASE:] = 50.0  # reserved rows, never trained: must not count towards the mean
    save_file({"model.embed_tokens.weight": emb}, os.path.join(d, "model.safetensors"))
    return emb


def check_tokenizer(out, base, meta, index):
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>", tok.eos_token
    assert tok.pad_token == "<|endoftext|>", tok.pad_token
    assert tok.chat_template == base.chat_template
    assert tok.model_max_length == base.model_max_length
    assert len(tok) == meta["vocab_size"], (len(tok), meta["vocab_size"])
    ids = {t["token"]: t["id"] for t in meta["tokens"]}
    for item, tokens in index.items():
        sid = "".join(tokens)
        enc = tok.encode(sid, add_special_tokens=False)
        assert enc == [ids[t] for t in tokens], (item, sid, enc)
        assert tok.decode(enc) == sid, (sid, tok.decode(enc))
    # The LLM's own post-processor: no end token appended to prompts; old tokens keep their ids.
    text = "Recommend a film like Heat"
    assert tok.encode(text) == base.encode(text)
    assert tok.encode(text)[-1] != tok.convert_tokens_to_ids("<|endoftext|>")
    chat = tok.apply_chat_template([{"role": "user", "content": sid}], tokenize=False)
    assert "<|im_start|>user" in chat and sid in chat, chat
    return tok


def check_round_trip(tok, index):
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        again = AutoTokenizer.from_pretrained(d)
        assert (again.eos_token, again.pad_token, len(again)) == (tok.eos_token, tok.pad_token, len(tok))
        assert again.chat_template == tok.chat_template
        for tokens in index.values():
            sid = "".join(tokens)
            assert again.encode(sid, add_special_tokens=False) == tok.encode(sid, add_special_tokens=False)


def check_resize_and_init(out, meta, emb):
    assert meta["embedding_rows"] == ROWS
    assert meta["resize_embeddings_to"] >= ROWS
    assert meta["reused_rows"]["first"] == BASE
    init = load_file(os.path.join(out, "sid_embeddings.safetensors"))
    assert list(init["token_ids"]) == list(range(meta["base_vocab_size"], meta["vocab_size"]))
    assert init["embeddings"].shape == (len(init["token_ids"]), DIM)
    mean = emb[:BASE].astype(np.float64).mean(0)
    assert np.abs(init["embeddings"] - mean).max() < 1e-3


def check_exports(sids, tmp, meta):
    index_path = os.path.join(tmp, "items.index.json")
    sidtool("export", sids, "--format", "minionerec", "--out", index_path)
    with open(index_path) as f:
        index = json.load(f)  # as MiniOneRec / LC-Rec / LETTER read it
    levels = len(meta["level_sizes"])
    assert all(len(v) == levels for v in index.values())
    npy = os.path.join(tmp, "codes")
    sidtool("export", sids, "--format", "codes-npy", "--out", npy)
    codes = np.load(os.path.join(npy, "codes.npy"))
    with open(os.path.join(npy, "item_ids.json")) as f:
        items = json.load(f)
    assert codes.dtype == np.int64 and codes.shape == (len(items), levels), codes.shape
    pattern = re.compile(r"<([a-z]+)_(\d+)>")
    for item, row in zip(items, codes):
        assert [int(pattern.fullmatch(t).group(2)) for t in index[str(item)]] == list(row)
    return index


class T(np.ndarray):
    """A numpy array with the one torch method the snippets use."""

    def to(self, dtype):
        return self.astype(dtype).view(T)


class FakeModel:
    """AutoModelForCausalLM's stand-in: the LLM's real embedding matrix, resized like torch's."""

    def __init__(self, emb):
        self.emb = emb.view(T)
        self.dtype = emb.dtype

    def resize_token_embeddings(self, n):
        assert n >= self.emb.shape[0], f"resize to {n} would shrink {self.emb.shape[0]} rows"
        grown = np.zeros((n, self.emb.shape[1]), self.emb.dtype)
        grown[: self.emb.shape[0]] = self.emb
        self.emb = grown.view(T)

    def get_input_embeddings(self):
        return types.SimpleNamespace(weight=types.SimpleNamespace(data=self.emb))


def run_doc_snippets(workdir, llm_emb):
    """Every ```python block of docs/llm-integration.md, in order, in one namespace, run in
    `workdir` (which holds the output folder `out/`)."""
    with open(os.path.join(ROOT, "docs/llm-integration.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 2, len(blocks)
    fake_torch = types.ModuleType("torch")
    fake_torch.full_like = np.full_like
    fake_st = types.ModuleType("safetensors.torch")
    fake_st.load_file = lambda p: {k: v.view(T) for k, v in load_file(p).items()}
    model = FakeModel(llm_emb.copy())
    fake_auto = types.SimpleNamespace(from_pretrained=lambda name: model)
    saved_modules = {k: sys.modules.get(k) for k in ["torch", "safetensors.torch"]}
    # torch-only classes: without torch transformers exports placeholders that raise on use.
    patches = {"AutoModelForCausalLM": fake_auto, "LogitsProcessor": object}
    saved = {k: getattr(transformers, k) for k in patches}
    sys.modules.update({"torch": fake_torch, "safetensors.torch": fake_st})
    for k, v in patches.items():
        setattr(transformers, k, v)
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        ns = {}
        for b in blocks:
            exec(compile(b, "docs/llm-integration.md", "exec"), ns)
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            setattr(transformers, k, v)
        for k, v in saved_modules.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    # Snippet 1 resized the model (never shrinking it) and initialised the new rows.
    with open(os.path.join(workdir, "out", "sid_tokens.json")) as f:
        meta = json.load(f)
    assert model.emb.shape[0] == meta["resize_embeddings_to"] >= ROWS
    for t in meta["tokens"]:
        assert np.abs(model.emb[t["id"]] - llm_emb[:BASE].mean(0)).max() < 1e-3
    return ns, meta


def decode_with(ns, trie, vocab, eos, markers, trials=200):
    """Greedy decoding from random logits through the snippet's processor: every SID that
    comes out must be a real item's."""
    rng = np.random.default_rng(0)
    prompt = [11, 22, 33]
    proc = ns["SidTrie"](len(prompt), eos)
    seen = set()
    for _ in range(trials):
        seq = list(prompt) + ([trie["begin_token_id"]] if markers else [])
        for _ in range(trie["levels"] + 1):
            scores = rng.normal(size=(1, vocab))
            scores = proc(np.array([seq]), scores)
            seq.append(int(scores[0].argmax()))
        start = len(prompt) + (1 if markers else 0)
        key = ",".join(map(str, seq[start: start + trie["levels"]]))
        assert key in trie["items"], key
        assert seq[-1] == (trie["end_token_id"] if markers else eos)
        seen.add(key)
    assert len(seen) > trials // 2, len(seen)  # constrained, not collapsed


def main():
    print(f"transformers {transformers.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        llm = os.path.join(tmp, "Qwen3-0.6B")
        os.makedirs(llm)
        llm_emb = make_llm(llm)
        work = os.path.join(tmp, "work")
        out = os.path.join(work, "out")
        sidtool("build", os.path.join(ROOT, "testdata/items.parquet"), "--out", out,
                "--codebook-sizes", "32,16,16", "--llm", llm, "--init-embeddings",
                "--markers", "<|sid_begin|>,<|sid_end|>")
        with open(os.path.join(out, "sid_tokens.json")) as f:
            meta = json.load(f)
        sids = os.path.join(out, "sids.parquet")
        index = check_exports(sids, tmp, meta)
        base = AutoTokenizer.from_pretrained(QWEN)
        tok = check_tokenizer(out, base, meta, index)
        check_round_trip(tok, index)
        check_resize_and_init(out, meta, llm_emb)
        ns, _ = run_doc_snippets(work, llm_emb)
        with open(os.path.join(out, "trie.json")) as f:
            trie = json.load(f)
        decode_with(ns, trie, meta["vocab_size"], tok.eos_token_id, markers=True)
        # Without markers the same snippet constrains from the first generated token.
        plain = os.path.join(tmp, "plain", "out")
        sidtool("vocab", "--sids", sids, "--llm", llm, "--out", plain, "--init-embeddings")
        ns, plain_meta = run_doc_snippets(os.path.dirname(plain), llm_emb)
        with open(os.path.join(plain, "trie.json")) as f:
            trie = json.load(f)
        assert trie["begin_token_id"] is None
        decode_with(ns, trie, plain_meta["vocab_size"], tok.eos_token_id, markers=False)
    print("llm hand-off: ok")


if __name__ == "__main__":
    main()
