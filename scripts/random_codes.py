#!/usr/bin/env python3
"""A table of uniform random codes for the items of a catalogue, as another tool would write it.

    python3 scripts/random_codes.py ITEMS.parquet OUT.parquet [--sizes 256,256,256] [--seed 1]

The floor of docs/quality.md: every tier of `sidtool eval` must score real IDs above these.
Writes `item_id` (as in ITEMS) and `codes` (List<Int64>); codes are drawn with Python's
`random.Random(seed)`, so a seed gives the same table on every machine. Needs pyarrow.
"""
import argparse
import random

import pyarrow as pa
import pyarrow.parquet as pq

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("items")
ap.add_argument("out")
ap.add_argument("--id-column", default="item_id")
ap.add_argument("--sizes", default="256,256,256")
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()

sizes = [int(s) for s in args.sizes.split(",")]
ids = pq.read_table(args.items, columns=[args.id_column]).column(0)
rng = random.Random(args.seed)
codes = [[rng.randrange(k) for k in sizes] for _ in range(len(ids))]
table = pa.table({"item_id": ids, "codes": pa.array(codes, type=pa.list_(pa.int64()))})
pq.write_table(table, args.out)
print(f"{args.out}: {len(ids)} items, random codes of sizes {sizes}, seed {args.seed}")
