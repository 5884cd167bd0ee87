#!/usr/bin/env python3
"""Side-by-side anchor for residual k-means: the same Parquet data through FAISS.

  python3 -m pip install -r bench/requirements.txt
  python3 bench/rq_anchor.py gen   --n 100000 --d 1024 --out /tmp/gmm.parquet   # deterministic Gaussian mixture
  python3 bench/rq_anchor.py faiss --data /tmp/gmm.parquet [--levels 3 --k 256 --niter 20 --full]
  python3 bench/rq_anchor.py score --sids sids.parquet [--levels 3 --k 256]   # metrics of any code table
  sidtool bench kmeans --data /tmp/gmm.parquet                                  # the same job in sidtool

`gen` writes `item_id` (Int64), `embedding` (FixedSizeList<Float32, d>, unit norm) and `cluster`
(the mixture component). The rows depend only on --d and the row index: a smaller --n gives a
prefix of the larger file (any --n works; the last chunk of 10 000 rows is cut short).

`faiss` trains RQ-KMeans with faiss.Kmeans per level (FAISS defaults: at most 256 training points
per centroid unless --full), encodes all rows, and prints one JSON line: train_s, encode_rows_per_s,
rel_mse per level, collision rate, utilisation and entropy per level.
`score` computes collision rate, utilisation and entropy of the `codes` column of a sids.parquet
(first --levels columns, i.e. before any suffix level; --k 0 takes each level's size from its
largest code), for a like-for-like check.
Time whole commands with the same machine state: these machines are noisy, so compare in one run.
With FAISS's bundled OpenBLAS set OPENBLAS_CORETYPE (e.g. SkylakeX) if it does not recognise the CPU.
"""
import argparse, json, time, sys
import numpy as np

D_DEFAULT, N_TOP, NOISE, ALPHA, CHUNK, SEED = 1024, 64, 0.85, 0.5, 10_000, 0


def mixture(d):
    rng = np.random.default_rng([SEED, 999_999])
    c = rng.standard_normal((N_TOP, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = (q * np.sign(np.diag(r))).astype(np.float32)
    spec = np.arange(1, d + 1, dtype=np.float64) ** (-ALPHA)
    spec *= NOISE / np.sqrt((spec ** 2).sum())
    s = np.stack([spec[rng.permutation(d)] * rng.choice([-1.0, 1.0], d) for _ in range(N_TOP)]).astype(np.float32)
    return c, q, s


def chunk(ci, p, d):
    c, q, s = p
    rng = np.random.default_rng([SEED, ci])
    k = rng.integers(0, N_TOP, CHUNK)
    z = rng.standard_normal((CHUNK, d), dtype=np.float32) * s[k]
    x = z @ q.T + c[k]
    return x / np.linalg.norm(x, axis=1, keepdims=True), k


def gen(a):
    import pyarrow as pa, pyarrow.parquet as pq
    assert a.n > 0, "n must be positive"
    p = mixture(a.d)
    w = None
    for ci in range((a.n + CHUNK - 1) // CHUNK):
        rows = min(CHUNK, a.n - ci * CHUNK)
        x, k = chunk(ci, p, a.d)
        x, k = x[:rows], k[:rows]
        ids = pa.array(np.arange(ci * CHUNK, ci * CHUNK + rows, dtype=np.int64))
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), a.d)
        t = pa.table({"item_id": ids, "embedding": emb, "cluster": pa.array(k.astype(np.int32))})
        w = w or pq.ParquetWriter(a.out, t.schema, compression="zstd")
        w.write_table(t)
    w.close()


def load(path):
    import pyarrow.parquet as pq
    t = pq.read_table(path, columns=["item_id", "embedding"])
    e = t.column("embedding").combine_chunks()
    x = e.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(t), -1)
    return t.column("item_id").to_numpy(), np.ascontiguousarray(x)


def code_stats(codes, sizes):
    n, L = codes.shape
    out = {"n": int(n), "levels": []}
    key = np.zeros(n, dtype=np.int64)
    for l in range(L):
        cnt = np.bincount(codes[:, l], minlength=sizes[l]).astype(np.float64)
        p = cnt[cnt > 0] / n
        key = key * sizes[l] + codes[:, l]
        out["levels"].append({"utilisation": float((cnt > 0).mean()), "entropy_bits": float(-(p * np.log2(p)).sum()),
                              "prefix_distinct": int(np.unique(key).size)})
    out["collision_rate"] = 1.0 - np.unique(key).size / n
    return out


def run_faiss(a):
    import faiss
    ids, x = load(a.data)
    n, d = x.shape
    t0 = time.perf_counter()
    cents, r = [], x.copy()
    for l in range(a.levels):
        km = faiss.Kmeans(d, a.k, niter=a.niter, seed=1234 + l, verbose=False,
                          max_points_per_centroid=(10**9 if a.full else 256))
        km.train(r)
        _, idx = km.index.search(r, 1)
        r -= km.centroids[idx[:, 0]]
        cents.append(km.centroids.copy())
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = np.empty((n, a.levels), dtype=np.int64)
    r = x.copy()
    for l, c in enumerate(cents):
        idx = faiss.IndexFlatL2(d); idx.add(c)
        _, j = idx.search(r, 1)
        codes[:, l] = j[:, 0]
        r -= c[j[:, 0]]
    enc_s = time.perf_counter() - t0
    rel, r = [], x.copy()
    for l, c in enumerate(cents):
        r -= c[codes[:, l]]
        rel.append(float((r ** 2).sum() / (x ** 2).sum()))
    st = code_stats(codes, [a.k] * a.levels)
    print(json.dumps({"tool": "faiss", "faiss": faiss.__version__, "n": n, "d": d, "train_s": train_s,
                      "encode_rows_per_s": n / enc_s, "rel_mse_per_level": rel, **st}))


def score(a):
    import pyarrow.parquet as pq
    t = pq.read_table(a.sids, columns=["item_id", "codes"])
    codes = np.array(t.column("codes").to_pylist(), dtype=np.int64)[:, : a.levels]
    sizes = [int(codes[:, l].max()) + 1 for l in range(a.levels)] if a.k == 0 else [a.k] * a.levels
    print(json.dumps({"tool": "score", **code_stats(codes, sizes)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen"); g.add_argument("--n", type=int, default=100_000); g.add_argument("--d", type=int, default=D_DEFAULT); g.add_argument("--out", required=True)
    f = sp.add_parser("faiss"); f.add_argument("--data", required=True); f.add_argument("--levels", type=int, default=3)
    f.add_argument("--k", type=int, default=256); f.add_argument("--niter", type=int, default=20); f.add_argument("--full", action="store_true")
    s = sp.add_parser("score"); s.add_argument("--data"); s.add_argument("--sids", required=True); s.add_argument("--levels", type=int, default=3); s.add_argument("--k", type=int, default=256)
    a = ap.parse_args()
    {"gen": gen, "faiss": run_faiss, "score": score}[a.cmd](a)


if __name__ == "__main__":
    main()
