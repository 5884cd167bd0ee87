#!/usr/bin/env bash
# The Python side, with packages from PyPI (no torch):
# 1. the `sidtool` Python package (py/): the wheel maturin builds installs into a fresh venv and
#    its tests (py/tests/) check the API against the command line bit for bit, and run the Spark
#    (local[2], Java 17) and Ray (2 CPUs) recipes of docs/distributed.md;
# 2. the LLM hand-off (tests/python/llm_handoff.py), once per transformers version users run:
#    the tokenizer folder must load in each.
# Venvs live under target/pyenv/ (kept between runs). Needs the release binary and the test assets.
set -euo pipefail
cd "$(dirname "$0")/.."
export SIDTOOL_BIN="${SIDTOOL_BIN:-$PWD/target/release/sidtool}"
test -x "$SIDTOOL_BIN" || { echo "build first: cargo build --release" >&2; exit 1; }
test -f test-assets/qwen-tokenizer/tokenizer.json || bash scripts/fetch-test-assets.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

venv() { # dir packages...
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet "$@"
  fi
}

venv target/pyenv/build maturin
rm -rf target/wheels
target/pyenv/build/bin/maturin build --release --quiet -m py/Cargo.toml -o target/wheels
# The engines are large downloads: kept in their own venv, which the fresh one sees.
venv target/pyenv/engines pyspark==4.0.1 "ray[data]==2.60.0" pytest numpy safetensors
# A fresh venv every time: the wheel must install as a user installs it.
rm -rf target/pyenv/wheel
python3 -m venv target/pyenv/wheel
target/pyenv/wheel/bin/pip install --quiet target/wheels/sidtool-*.whl
# The engines' site-packages, after the wheel's own (a .pth file adds a directory to sys.path).
target/pyenv/engines/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
  > "$(target/pyenv/wheel/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/engines.pth"
target/pyenv/wheel/bin/python -m pytest -q -p no:cacheprovider py/tests

for version in 4.46.3 4.57.6 5.25.0; do
  dir="target/pyenv/transformers-$version"
  venv "$dir" "transformers==$version" -r tests/python/requirements.txt
  "$dir/bin/python" tests/python/llm_handoff.py
done
