#!/usr/bin/env python3
"""Synthetic interactions for `sidtool collab` benchmarks (docs/benchmarks.md).

Writes DIR/items.parquet (item_id) and DIR/interactions.parquet (user_id, item_id, timestamp):
USERS users in TASTES taste groups; each user draws EVENTS/USERS items, with probability
1 - NOISE from its group's items and otherwise from the whole catalogue, both Zipf-skewed by
popularity (exponent 1.0), in random time order. Deterministic for a given --seed.

    python3 scripts/make_interactions.py --out /tmp/collab-bench
"""

import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=3700)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--tastes", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)

    item_ids = np.array([f"item-{i:07d}" for i in range(a.items)], dtype=object)
    pq.write_table(pa.table({"item_id": item_ids}), os.path.join(a.out, "items.parquet"))

    group_of_item = rng.integers(0, a.tastes, a.items)
    members = [np.flatnonzero(group_of_item == g) for g in range(a.tastes)]
    popularity = 1.0 / np.arange(1, a.items + 1)
    rng.shuffle(popularity)

    cdfs = {}

    def zipf_pick(key, pool, n):
        if key not in cdfs:
            c = np.cumsum(popularity[pool])
            cdfs[key] = c / c[-1]
        i = np.searchsorted(cdfs[key], rng.random(n), side="right")
        return pool[np.minimum(i, len(pool) - 1)]

    per_user = np.full(a.users, a.events // a.users)
    per_user[: a.events - per_user.sum()] += 1
    users, items, times = [], [], []
    everyone = np.arange(a.items)
    for u in range(a.users):
        n = per_user[u]
        g = u % a.tastes
        noisy = rng.random(n) < a.noise
        picks = np.empty(n, dtype=np.int64)
        picks[~noisy] = zipf_pick(g, members[g], int((~noisy).sum()))
        picks[noisy] = zipf_pick("all", everyone, int(noisy.sum()))
        users.append(np.full(n, u))
        items.append(picks)
        times.append(1_700_000_000 + rng.permutation(n) * 60)
    users = np.concatenate(users)
    items = np.concatenate(items)
    times = np.concatenate(times)
    order = rng.permutation(len(users))  # file order is not time order
    table = pa.table(
        {
            "user_id": pa.array([f"user-{u}" for u in users[order]]),
            "item_id": pa.array(item_ids[items[order]].tolist()),
            "timestamp": pa.array(times[order], type=pa.int64()),
        }
    )
    pq.write_table(table, os.path.join(a.out, "interactions.parquet"))
    print(f"{len(users)} interactions, {a.users} users, {a.items} items -> {a.out}")


if __name__ == "__main__":
    main()
