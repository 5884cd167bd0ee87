#!/usr/bin/env python3
"""Raw-code parts for timing `sidtool resolve` at scale (docs/benchmarks.md).

  python3 bench/resolve_bench.py --rows 10000000 --parts 20 --out /tmp/raw20
  /usr/bin/time -v sidtool resolve /tmp/raw20 --out /tmp/sids.parquet     # wall time, max RSS

Writes PARTS Parquet files `part-NNNNN.parquet` as `sidtool assign --dedup none` (or
`Quantizer.encode`) writes raw codes: `item_id` (Int64, 0 … rows−1 in order) and `codes`
(FixedSizeList<UInt16, levels>), with sidtool's footer naming a made-up quantizer. Codes are
drawn from a seeded Zipf-like distribution over the first level and uniform below it, so the
collision groups are skewed as real catalogues' are. The same --rows with another --parts
gives the same rows split differently: the memory of `resolve` must not grow with the number
of parts.
"""
import argparse
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    meta = {
        "sidtool_version": "0.1.0",
        "method": "rq-kmeans",
        "codebook_sizes": [a.k] * a.levels,
        "dedup": "none",
        "suffix_level": False,
        "token_format": "<{level}_{code}>",
        "quantizer_fingerprint": "resolve-bench",
    }
    codes_type = pa.list_(pa.field("item", pa.uint16(), False), a.levels)
    schema = pa.schema(
        [pa.field("item_id", pa.int64(), False), pa.field("codes", codes_type, False)],
        metadata={"sidtool:sids": json.dumps(meta)},
    )
    # A skewed first level (weights ∝ 1/(rank+1)), uniform deeper levels.
    w = 1.0 / np.arange(1, a.k + 1)
    w /= w.sum()
    # All codes from one seeded stream (2 bytes per level per row), then cut into parts.
    rng = np.random.default_rng(a.seed)
    every = rng.integers(0, a.k, size=(a.rows, a.levels), dtype=np.uint16)
    every[:, 0] = rng.choice(a.k, size=a.rows, p=w).astype(np.uint16)
    bounds = np.linspace(0, a.rows, a.parts + 1).astype(np.int64)
    for p in range(a.parts):
        lo, hi = int(bounds[p]), int(bounds[p + 1])
        c = every[lo:hi]
        codes = pa.FixedSizeListArray.from_arrays(pa.array(c.ravel(), pa.uint16()), a.levels)
        t = pa.Table.from_arrays([pa.array(np.arange(lo, hi, dtype=np.int64)), codes], schema=schema)
        pq.write_table(t, os.path.join(a.out, f"part-{p:05}.parquet"))
    print(json.dumps({"rows": a.rows, "parts": a.parts, "levels": a.levels, "k": a.k, "out": a.out}))


if __name__ == "__main__":
    main()
