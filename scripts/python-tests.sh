#!/usr/bin/env bash
# The Python side of the LLM hand-off (tests/python/llm_handoff.py), once per transformers
# version users run: the tokenizer folder must load in each. Each version gets its own venv
# under target/pyenv/ (kept between runs). Needs the release binary and the test assets.
set -euo pipefail
cd "$(dirname "$0")/.."
export SIDTOOL_BIN="${SIDTOOL_BIN:-$PWD/target/release/sidtool}"
test -x "$SIDTOOL_BIN" || { echo "build first: cargo build --release" >&2; exit 1; }
test -f test-assets/qwen-tokenizer/tokenizer.json || bash scripts/fetch-test-assets.sh
for version in 4.46.3 4.57.6 5.25.0; do
  venv="target/pyenv/transformers-$version"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "transformers==$version" -r tests/python/requirements.txt
  fi
  "$venv/bin/python" tests/python/llm_handoff.py
done
