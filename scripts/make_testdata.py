#!/usr/bin/env python3
"""Generate the small synthetic test catalogue `testdata/items.parquet` (and its text-only
twin `testdata/items_text.parquet`).

400 items in 8 categories x 4 sub-clusters, with 64-d L2-normalised Float32 embeddings that
have real hierarchical structure (category centroid -> sub-cluster centroid -> item), readable
made-up titles from per-category word lists, and a nullable one-sentence description (~5% null).

Deterministic: the same seed always gives the same file contents.

Usage (from the repo root):
    python3 scripts/make_testdata.py                     # writes testdata/items.parquet
                                                         # and testdata/items_text.parquet
    python3 scripts/make_testdata.py --out /tmp/x.parquet --seed 7
Needs only numpy and pyarrow.
"""

import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_ITEMS = 400
DIM = 64
N_SUB = 4
SEED = 20240607

# Geometry of the hierarchy (norms of the offsets added before normalising).
SUB_OFFSET = 0.55  # ||sub-cluster centroid - category centroid||, category centroid has norm 1
ITEM_NOISE = 0.25  # expected ||item noise||

# category -> (adjectives, 4 sub-genres each (name, nouns), description template)
CATEGORIES = {
    "Books": (
        ["Silent", "Forgotten", "Last", "Hidden", "Crimson", "Winter", "Quiet", "Lost"],
        [
            ("mystery", ["Harbor", "Witness", "Alibi", "Cellar"]),
            ("fantasy", ["Dragon", "Kingdom", "Sorcerer", "Crown"]),
            ("history", ["Empire", "Chronicle", "Frontier", "Dynasty"]),
            ("romance", ["Letters", "Summer", "Promise", "Garden"]),
        ],
        "A {sub} novel about {adj_l} secrets and the {noun_l} that changes everything.",
    ),
    "Movies": (
        ["Dark", "Final", "Broken", "Golden", "Midnight", "Wild", "Electric", "Burning"],
        [
            ("thriller", ["Pursuit", "Protocol", "Escape", "Target"]),
            ("comedy", ["Wedding", "Roommates", "Vacation", "Mixup"]),
            ("sci-fi", ["Orbit", "Signal", "Colony", "Paradox"]),
            ("western", ["Canyon", "Sheriff", "Outlaw", "Railroad"]),
        ],
        "A {sub} film where a {adj_l} {noun_l} sets the story in motion.",
    ),
    "Music": (
        ["Neon", "Velvet", "Blue", "Electric", "Lonely", "Golden", "Distant", "Starlit"],
        [
            ("jazz", ["Nocturne", "Standards", "Blues", "Session"]),
            ("rock", ["Anthems", "Riot", "Amplifier", "Highway"]),
            ("classical", ["Sonatas", "Concerto", "Preludes", "Requiem"]),
            ("electronic", ["Pulse", "Circuits", "Waves", "Synthesis"]),
        ],
        "A {sub} album of {adj_l} tracks built around the {noun_l}.",
    ),
    "Garden": (
        ["Heavy-Duty", "Compact", "Cedar", "Galvanised", "Organic", "Folding", "Solar", "Classic"],
        [
            ("tools", ["Pruner", "Trowel", "Rake", "Hoe"]),
            ("planters", ["Planter", "Window Box", "Raised Bed", "Pot Set"]),
            ("watering", ["Hose Reel", "Sprinkler", "Watering Can", "Drip Kit"]),
            ("lighting", ["Lantern", "Path Light", "String Lights", "Spotlight"]),
        ],
        "A {adj_l} {noun_l} for {sub} in small and large gardens.",
    ),
    "Kitchen": (
        ["Cast-Iron", "Nonstick", "Stainless", "Bamboo", "Ceramic", "Copper", "Enamel", "Pro"],
        [
            ("cookware", ["Skillet", "Saucepan", "Dutch Oven", "Wok"]),
            ("knives", ["Chef Knife", "Paring Knife", "Cleaver", "Knife Block"]),
            ("baking", ["Loaf Pan", "Mixing Bowl", "Rolling Pin", "Cake Tin"]),
            ("coffee", ["Pour-Over", "French Press", "Grinder", "Kettle"]),
        ],
        "A {adj_l} {noun_l} for everyday {sub}.",
    ),
    "Toys": (
        ["Wooden", "Magnetic", "Giant", "Rainbow", "Mini", "Glow", "Deluxe", "Pocket"],
        [
            ("puzzles", ["Jigsaw", "Puzzle Cube", "Maze", "Tangram"]),
            ("building", ["Block Set", "Bridge Kit", "Tower", "Marble Run"]),
            ("plush", ["Bear", "Bunny", "Dinosaur", "Octopus"]),
            ("outdoor", ["Kite", "Frisbee", "Water Blaster", "Hula Hoop"]),
        ],
        "A {adj_l} {noun_l} from our {sub} range, for ages 4 and up.",
    ),
    "Sports": (
        ["Lightweight", "Pro", "Trail", "Carbon", "All-Weather", "Training", "Elite", "Ultra"],
        [
            ("running", ["Running Shoe", "Hydration Vest", "Race Belt", "Shorts"]),
            ("cycling", ["Helmet", "Bike Light", "Saddle", "Jersey"]),
            ("fitness", ["Kettlebell", "Yoga Mat", "Jump Rope", "Resistance Band"]),
            ("camping", ["Tent", "Sleeping Bag", "Headlamp", "Camp Stove"]),
        ],
        "A {adj_l} {noun_l} designed for {sub}.",
    ),
    "Beauty": (
        ["Hydrating", "Gentle", "Radiant", "Matte", "Soothing", "Botanical", "Overnight", "Daily"],
        [
            ("skincare", ["Serum", "Moisturiser", "Cleanser", "Face Mask"]),
            ("haircare", ["Shampoo", "Conditioner", "Hair Oil", "Styling Cream"]),
            ("makeup", ["Lipstick", "Mascara", "Foundation", "Blush"]),
            ("fragrance", ["Eau de Parfum", "Body Mist", "Cologne", "Scented Oil"]),
        ],
        "A {adj_l} {noun_l} from the {sub} line.",
    ),
}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_table(seed: int = SEED) -> pa.Table:
    rng = np.random.default_rng(seed)
    cat_names = list(CATEGORIES)
    n_cat = len(cat_names)

    # Hierarchy of centroids: categories (unit), sub-clusters (category + offset).
    cat_cent = unit(rng.standard_normal((n_cat, DIM)))
    sub_dir = unit(rng.standard_normal((n_cat, N_SUB, DIM)))
    sub_cent = cat_cent[:, None, :] + SUB_OFFSET * sub_dir

    # Balanced categories (50 each) in shuffled row order; sub-clusters uniform.
    cat = rng.permutation(np.repeat(np.arange(n_cat), N_ITEMS // n_cat))
    sub = rng.integers(0, N_SUB, size=N_ITEMS)
    noise = rng.standard_normal((N_ITEMS, DIM)) * (ITEM_NOISE / np.sqrt(DIM))
    emb = unit(sub_cent[cat, sub] + noise).astype(np.float32)

    titles, descs = [], []
    null_desc = np.zeros(N_ITEMS, dtype=bool)
    null_desc[rng.choice(N_ITEMS, size=N_ITEMS // 20, replace=False)] = True  # exactly 5%
    for i in range(N_ITEMS):
        adjs, subs, template = CATEGORIES[cat_names[cat[i]]]
        sub_name, nouns = subs[sub[i]]
        adj = adjs[rng.integers(len(adjs))]
        noun = nouns[rng.integers(len(nouns))]
        if cat_names[cat[i]] in ("Books", "Movies", "Music"):
            title = f"The {adj} {noun}" if rng.random() < 0.5 else f"{adj} {noun}"
            if rng.random() < 0.3:
                title += f" {['II', 'III', 'Vol. 2', 'Deluxe Edition'][rng.integers(4)]}"
        else:
            title = f"{adj} {noun}"
            if rng.random() < 0.4:
                title += f" ({['Set of 2', 'Large', 'Small', '2nd Gen', 'Green', 'Grey'][rng.integers(6)]})"
        titles.append(title)
        descs.append(None if null_desc[i] else template.format(sub=sub_name, adj_l=adj.lower(), noun_l=noun.lower()))

    values = pa.array(emb.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(values, DIM)
    schema = pa.schema(
        [
            pa.field("item_id", pa.utf8(), nullable=False),
            pa.field("title", pa.utf8(), nullable=False),
            pa.field("category", pa.utf8(), nullable=False),
            pa.field("description", pa.utf8(), nullable=True),
            pa.field("embedding", embedding.type, nullable=False),
        ]
    )
    return pa.Table.from_arrays(
        [
            pa.array([f"item-{i + 1:04d}" for i in range(N_ITEMS)], type=pa.utf8()),
            pa.array(titles, type=pa.utf8()),
            pa.array([cat_names[c] for c in cat], type=pa.utf8()),
            pa.array(descs, type=pa.utf8()),
            embedding,
        ],
        schema=schema,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join("testdata", "items.parquet"), help="output Parquet path")
    ap.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    args = ap.parse_args()

    table = make_table(args.seed)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    pq.write_table(table, args.out, compression="zstd")
    # The same catalogue as text only (no vectors): `sidtool build` embeds it itself.
    text_out = os.path.join(os.path.dirname(args.out) or ".", "items_text.parquet")
    pq.write_table(table.drop_columns(["embedding"]), text_out, compression="zstd")
    n_null = table.column("description").null_count
    print(
        f"wrote {args.out}: {table.num_rows} items, {len(CATEGORIES)} categories x {N_SUB} sub-clusters, "
        f"dim {DIM} float32 (L2-normalised), {n_null} null descriptions, seed {args.seed}"
    )


if __name__ == "__main__":
    main()
