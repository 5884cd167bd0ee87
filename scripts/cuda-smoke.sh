#!/usr/bin/env bash
# The `--features cuda` binary on a machine without a GPU or driver (run after
# scripts/cuda-build.sh): it needs no CUDA library to start, does CPU work exactly as the default
# binary does, and `--device cuda` fails with a clear message, not a panic.
#   <target>/cuda/sidtool   the cuda binary;  <target>/release/sidtool   the default one
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cuda="$target/cuda/sidtool"
cpu="$target/release/sidtool"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "cuda-smoke: $*" >&2
  exit 1
}

# No CUDA library among the ones the loader must find (they are opened at run time).
ldd "$cuda" >"$tmp/ldd"
if grep -E 'lib(cuda|cudart|cublas|cublasLt|curand|nvrtc)\.' "$tmp/ldd"; then
  fail "$cuda links CUDA libraries"
fi
"$cuda" --help >/dev/null || fail "--help failed"
cmp -s "$cuda" "$cpu" && fail "$cpu is the cuda binary; the default build must be there"

# CPU work: the same IDs as the default binary, byte for byte.
for b in cpu cuda; do
  "${!b}" build testdata/items.parquet --config testdata/sidtool.toml --out "$tmp/$b" -q
done
cmp "$tmp/cpu/sids.parquet" "$tmp/cuda/sids.parquet" || fail "the cuda binary's CPU IDs differ"

# --device cuda in every command that has it: a non-zero exit, the reason, no panic.
"$cpu" import-recbole testdata/recbole-tiny --out "$tmp/rb" -q
runs=(
  "embed testdata/items_text.parquet --config testdata/sidtool.toml --out $tmp/e.parquet"
  "train testdata/items.parquet --config testdata/sidtool.toml --out $tmp/q"
  "assign testdata/items.parquet --config testdata/sidtool.toml --quantizer $tmp/cpu/quantizer --out $tmp/s.parquet"
  "build testdata/items.parquet --config testdata/sidtool.toml --out $tmp/b"
  "collab $tmp/rb/interactions.parquet --items $tmp/rb/items.parquet --out $tmp/c.parquet"
)
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086 # the words of $run are the arguments
  if "$cuda" $run --device cuda 2>"$tmp/err" >/dev/null; then
    fail "sidtool $run --device cuda succeeded without a GPU"
  fi
  grep -q 'cannot open CUDA device 0' "$tmp/err" && grep -q 'libcuda.so.1' "$tmp/err" ||
    fail "sidtool ${run%% *} --device cuda: unclear message: $(cat "$tmp/err")"
  grep -qiE 'panicked|RUST_BACKTRACE' "$tmp/err" && fail "sidtool ${run%% *}: panic text: $(cat "$tmp/err")"
  echo "cuda-smoke: ${run%% *} --device cuda: $(grep -m1 '^error:' "$tmp/err")"
done
echo "cuda-smoke: ok; $(stat -c %s "$target/cuda/stripped/sidtool") bytes stripped," \
  "$(stat -c %s "$target/cuda/sidtool.xz") in sidtool.xz"
