#!/usr/bin/env bash
# The one sidtool binary with `--features cuda` that runs anywhere: CPU work on any x86-64 Linux
# machine, CUDA loaded at run time only for `--device cuda` (docs/gpu.md). Run
# scripts/cuda-toolchain.sh first. Builds in ${CARGO_TARGET_DIR:-target}, runs clippy for the
# feature, and leaves
#   <target>/cuda/sidtool           the binary (with line tables, as the release profile has)
#   <target>/cuda/stripped/sidtool  the same, stripped
#   <target>/cuda/sidtool.xz        the stripped binary, xz-compressed (≈ 12 MB, the stripped
#                                   one is ≈ 80 MB): the one to carry to a GPU machine
# The patched cudarc comes in through `--config patch...`; Cargo.toml and Cargo.lock are left
# byte-identical (cargo writes the path source into the lock, which is put back). The default
# build's binary is put back into <target>/release at the end: both feature sets' artefacts live
# side by side in the target dir, so that step does not recompile anything.
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
tc="$target/cuda-toolchain"
if [[ ! -f $tc/env ]]; then
  echo "cuda-build: no $tc/env; run scripts/cuda-toolchain.sh first" >&2
  exit 1
fi
# shellcheck source=/dev/null
source "$tc/env"

# cargo records the patched cudarc's path in Cargo.lock; the lock is put back on any exit.
kept=$(mktemp -d)
cp Cargo.toml Cargo.lock "$kept/"
restore_lock() { cmp -s "$kept/Cargo.lock" Cargo.lock || cp "$kept/Cargo.lock" Cargo.lock; }
trap 'restore_lock; rm -rf "$kept"' EXIT

patch_cudarc=(--config "patch.crates-io.cudarc.path=\"$SIDTOOL_CUDARC\"")
secs() { local t0=$SECONDS; "$@"; echo "cuda-build: $(($SECONDS - t0)) s: ${*:1:4}" >&2; }

secs cargo build --release --features cuda "${patch_cudarc[@]}"
out="$target/cuda"
if ! cmp -s "$target/release/sidtool" "$out/sidtool" || [[ ! -f $out/sidtool.xz ]]; then
  mkdir -p "$out/stripped"
  cp "$target/release/sidtool" "$out/sidtool"
  strip -o "$out/stripped/sidtool" "$out/sidtool"
  secs xz -9 -T0 -c "$out/stripped/sidtool" >"$out/sidtool.xz.tmp"
  mv "$out/sidtool.xz.tmp" "$out/sidtool.xz"
fi
secs cargo clippy --release --all-targets --features cuda "${patch_cudarc[@]}" -- -D warnings

restore_lock
# The default binary back in target/release for the steps after this one.
secs cargo build --release
for f in Cargo.toml Cargo.lock; do
  cmp -s "$kept/$f" "$f" || { echo "cuda-build: $f changed" >&2; exit 1; }
done
ls -l "$out/sidtool" "$out/stripped/sidtool" "$out/sidtool.xz" >&2
