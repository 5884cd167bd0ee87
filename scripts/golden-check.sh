#!/usr/bin/env bash
# Golden check for behaviour-preserving changes (refactors): run the same builds with two
# sidtool binaries and require byte-identical user-facing outputs: sids.parquet, stats.json and
# the vocabulary artefacts (tokenizer.json, sid_tokens.json, trie.*, cid_trie.*).
# manifest.json is left out (it records the run time and per-stage timings).
#
#   scripts/golden-check.sh OLD_BIN NEW_BIN [WORKDIR]
#
# e.g. build the commit before the change in a worktree, then
#   scripts/golden-check.sh /tmp/old/target/release/sidtool target/release/sidtool
# Runs on the shipped test data; adds a MovieLens-1M GenSAR build when test-assets/ml-1m
# exists (bash scripts/fetch-test-assets.sh). Both binaries must run on the same CPU: the
# GEMM kernel is picked at run time and rounding differs between AVX-512 and AVX2.
# Exit 0 when every compared file is identical, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
new=$(realpath "$2")
work=${3:-$(mktemp -d)}
mkdir -p "$work"

# The settings of testdata/sidtool.toml that shape outputs, in a file of their own: the example
# config gains keys over time that an older binary would refuse.
cat >"$work/golden.toml" <<'TOML'
seed = 42
[quantizer]
codebook_sizes = [32, 16, 16]
[embed]
model = "testdata/tiny-qwen3"
template = "Title: {title}; Category: {category}; Description: {description}"
TOML

status=0
# case NAME BUILD-ARGS...: build with both binaries, compare the outputs.
case_() {
  local name=$1
  shift
  "$old" build "$@" --out "$work/$name-old" -q --seed 7
  "$new" build "$@" --out "$work/$name-new" -q --seed 7
  local compared=0 f
  for f in sids.parquet stats.json tokenizer.json sid_tokens.json trie.parquet trie.json \
    cid_trie.parquet cid_trie.json; do
    if [ -e "$work/$name-old/$f" ] || [ -e "$work/$name-new/$f" ]; then
      compared=$((compared + 1))
      if ! cmp -s "$work/$name-old/$f" "$work/$name-new/$f"; then
        echo "DIFFERENT: $name/$f"
        status=1
      fi
    fi
  done
  echo "$name: $compared files compared"
}

case_ kmeans-vectors testdata/items.parquet --config "$work/golden.toml"
case_ kmeans-text testdata/items_text.parquet --config "$work/golden.toml"
case_ kmeans-reassign testdata/items.parquet --codebook-sizes 8,4,4 --dedup reassign \
  --tokenizer testdata/tiny-qwen3/tokenizer.json --tokens used --markers "<s_b>,<s_e>"
case_ rqvae testdata/items.parquet --method rq-vae --codebook-sizes 16,8,8 --epochs 20 \
  --hidden 64,32 --latent-dim 16 --batch-size 64
if [ -d test-assets/ml-1m ]; then
  "$old" import-recbole test-assets/ml-1m --out "$work/ml1m" -q
  # The MovieLens GenSAR build of tests/movielens.rs: SIDs, CIDs and both tries.
  case_ movielens-gensar "$work/ml1m/items.parquet" \
    --interactions "$work/ml1m/interactions.parquet" --method gensar \
    --model testdata/tiny-qwen3 --template "{item_id}; Genres: {genre}" --codebook-sizes 32 \
    --hidden 128,64 --latent-dim 16 --epochs 40 --batch-size 256
else
  echo "movielens-gensar: skipped (run bash scripts/fetch-test-assets.sh)"
fi
[ $status -eq 0 ] && echo "golden check: all outputs byte-identical"
exit $status
