#!/usr/bin/env bash
# The one prepared device check (docs/gpu.md): correctness of every device stage against the
# CPU, then the GPU figures of docs/benchmarks.md beside their anchors (HF transformers and
# PyTorch on the same GPU), in one call well under 10 minutes on an H200.
#
#   SIDTOOL=target/cuda/sidtool bash scripts/gpu-check.sh            # on the GPU machine
#   DEVICE=cpu QUICK=1 bash scripts/gpu-check.sh                     # dry run, any machine
#
# Needs: the sidtool binary ($SIDTOOL; built with --features cuda for DEVICE=cuda), python3
# (torch and transformers for the anchors; without them the anchors are reported as
# skipped), and test-assets/qwen-tokenizer/tokenizer.json for the Qwen3-0.6B-shaped model
# (else the tiny test model stands in). No pyarrow: sidtool writes the data (`bench gen`).
# Prints one JSON line per figure and writes them all to $OUT/gpu-check.jsonl; exits non-zero
# when a correctness check fails (the figures are still written).
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
OUT=${OUT:-target/gpu-check}
if [ -z "${SIDTOOL:-}" ]; then
  # The carried binary is target/cuda/sidtool.xz (scripts/cuda-build.sh): unpacked once.
  if [ ! -x target/cuda/sidtool ] && [ -f target/cuda/sidtool.xz ]; then
    if command -v xz >/dev/null; then
      xz -dc target/cuda/sidtool.xz >target/cuda/sidtool
    else
      python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        target/cuda/sidtool.xz target/cuda/sidtool
    fi
    chmod +x target/cuda/sidtool
  fi
  SIDTOOL=target/release/sidtool
  [ -x target/cuda/sidtool ] && SIDTOOL=target/cuda/sidtool
fi
mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/sidtool-gpu-check.XXXXXX")
trap 'rm -rf "$W"' EXIT
LOG="$OUT/gpu-check.jsonl"
: >"$LOG"
FAILED=0

# Sizes: the issue's targets, or a few seconds' worth for a dry run.
if [ "$QUICK" = 1 ]; then
  N=20000 D=64 K=64 EMBED_N=64 EPOCHS=2 RQVAE_SIZES=64,64,64
else
  N=1000000 D=1024 K=256 EMBED_N=8192 EPOCHS=3 RQVAE_SIZES=256,256,256
fi

# One JSON line: `emit CHECK JSON` adds {"check": CHECK, "device": DEVICE} to an object.
emit() {
  python3 -c 'import json,sys; o=json.loads(sys.argv[3]); o={"check":sys.argv[1],"device":sys.argv[2],**o}; print(json.dumps(o))' \
    "$1" "$DEVICE" "$2" | tee -a "$LOG"
}
fail() {
  FAILED=1
  emit "$1" "{\"ok\": false, \"error\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")}"
}
have_torch() { python3 -c 'import torch, transformers' 2>/dev/null; }
# `torch.cuda` only where the check runs on CUDA.
torch_device() { [ "$DEVICE" = cuda ] && echo cuda || echo cpu; }
secs() { date +%s.%N; }

emit env "$(python3 - "$SIDTOOL" <<'EOF'
import json, platform, subprocess, sys
o = {"sidtool": subprocess.run([sys.argv[1], "--version"], capture_output=True, text=True).stdout.strip(),
     "cpu": platform.processor() or platform.machine()}
try:
    o["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except OSError:
    o["gpu"] = None
try:
    import torch, transformers
    o["torch"], o["transformers"] = torch.__version__, transformers.__version__
except ImportError:
    o["torch"] = None
print(json.dumps(o))
EOF
)"

# ---- data -------------------------------------------------------------------------------------
t0=$(secs)
"$SIDTOOL" bench gen --n "$N" --d "$D" --out "$W/gmm.parquet" --npy "$W/gmm.npy" >/dev/null ||
  fail gen "bench gen failed"
emit gen "{\"rows\": $N, \"d\": $D, \"seconds\": $(python3 -c "print($(secs)-$t0)")}"

# ---- correctness: k-means codes identical to the CPU's -----------------------------------------
# Train on both, encode the CPU model on both: the device must reproduce the CPU rule exactly.
# Plain k-means: balanced training (the default) always runs on the CPU.
KM_ROWS=$((N < 50000 ? N : 50000))
"$SIDTOOL" bench gen --n "$KM_ROWS" --d "$D" --out "$W/km.parquet" >/dev/null
km_ok=1
for dev in cpu "$DEVICE"; do
  "$SIDTOOL" train "$W/km.parquet" --out "$W/q-$dev" --codebook-sizes "$K,$K,$K" --balanced=false \
    --device "$dev" -q ||
    km_ok=0
done
for q in cpu "$DEVICE"; do
  for dev in cpu "$DEVICE"; do
    "$SIDTOOL" assign "$W/km.parquet" --quantizer "$W/q-$q" --out "$W/s-$q-$dev.parquet" \
      --dedup none --device "$dev" -q &&
      "$SIDTOOL" export "$W/s-$q-$dev.parquet" --format index-json --out "$W/c-$q-$dev.json" -q ||
      km_ok=0
  done
done
if [ $km_ok = 1 ]; then
  line=$(python3 - "$W" "$DEVICE" <<'EOF'
import json, sys
w, dev = sys.argv[1], sys.argv[2]
c = {(q, d): json.load(open(f"{w}/c-{q}-{d}.json")) for q in ("cpu", dev) for d in ("cpu", dev)}
ref = c[("cpu", "cpu")]
same = lambda o: sum(o.get(i) == t for i, t in ref.items()) / len(ref)
enc, train = same(c[("cpu", dev)]), same(c[(dev, dev)])
print(json.dumps({"ok": enc == 1.0 and train == 1.0, "rows": len(ref),
                  "encode_identical_fraction": enc, "train_identical_fraction": train}))
EOF
)
  emit kmeans_codes_vs_cpu "$line"
  echo "$line" | grep -q '"ok": true' || FAILED=1
else
  fail kmeans_codes_vs_cpu "train or assign failed"
fi

# ---- correctness: RQ-VAE on the device against the CPU ----------------------------------------
rq_ok=1
for dev in cpu "$DEVICE"; do
  "$SIDTOOL" train "$W/km.parquet" --out "$W/v-$dev" --method rq-vae --codebook-sizes "$K,$K,$K" \
    --epochs 10 --device "$dev" -q || rq_ok=0
done
if [ $rq_ok = 1 ]; then
  line=$(python3 - "$W" "$DEVICE" <<'EOF'
import json, sys
w, dev = sys.argv[1], sys.argv[2]
ev = {d: json.load(open(f"{w}/v-{d}/config.json"))["evaluations"][-1] for d in ("cpu", dev)}
a, b = ev["cpu"]["recon_mse"], ev[dev]["recon_mse"]
rel = abs(a - b) / max(a, 1e-12)
print(json.dumps({"ok": rel <= 0.05, "recon_mse_cpu": a, "recon_mse_device": b, "relative_difference": rel}))
EOF
)
  emit rqvae_vs_cpu "$line"
  echo "$line" | grep -q '"ok": true' || FAILED=1
  # The CPU-trained model encoded on the device: the CPU's codes exactly.
  for dev in cpu "$DEVICE"; do
    "$SIDTOOL" assign "$W/km.parquet" --quantizer "$W/v-cpu" --out "$W/vs-$dev.parquet" \
      --dedup none --device "$dev" -q &&
      "$SIDTOOL" export "$W/vs-$dev.parquet" --format index-json --out "$W/vc-$dev.json" -q ||
      rq_ok=0
  done
  if [ $rq_ok = 1 ]; then
    line=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); f=sum(b.get(k)==v for k,v in a.items())/len(a); print(json.dumps({"ok": f==1.0, "rows": len(a), "encode_identical_fraction": f}))' "$W/vc-cpu.json" "$W/vc-$DEVICE.json")
    emit rqvae_codes_vs_cpu "$line"
    echo "$line" | grep -q '"ok": true' || FAILED=1
  else
    fail rqvae_codes_vs_cpu "rq-vae assign failed"
  fi
else
  fail rqvae_vs_cpu "rq-vae training failed"
fi

# ---- embedding: the Qwen3-0.6B shape (random weights) against the CPU in f32, and its speed ----
MODEL=testdata/tiny-qwen3
TOK=test-assets/qwen-tokenizer/tokenizer.json
if [ "$QUICK" != 1 ] && have_torch && [ -f "$TOK" ]; then
  python3 bench/transformers_embed_bench.py make-model --out "$W/qwen3-0.6b" --tokenizer "$TOK" \
    --device "$(torch_device)" >/dev/null &&
    MODEL="$W/qwen3-0.6b"
fi
for dtype in f32 bf16; do
  line=$("$SIDTOOL" bench embed --model "$MODEL" --n "$EMBED_N" --tokens 64 --warmup 256 \
    --device "$DEVICE" --dtype "$dtype" 2>/dev/null | tail -1)
  if [ -n "$line" ]; then
    ok=$(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); c=o.get("min_cosine_vs_f32"); t=0.99999 if sys.argv[2]=="f32" else 0.999; print(json.dumps({"ok": c is None or c >= t, **o}))' "$line" "$dtype")
    emit embed_sidtool "$ok"
    echo "$ok" | grep -q '"ok": true' || FAILED=1
  else
    fail embed_sidtool "bench embed --dtype $dtype failed"
  fi
done
if have_torch; then
  line=$(python3 bench/transformers_embed_bench.py bench --model "$MODEL" --n "$EMBED_N" --tokens 64 \
    --batch 1024 --device "$(torch_device)" --dtype bf16 2>/dev/null | tail -1)
  [ -n "$line" ] && emit embed_transformers "$line" || fail embed_transformers "transformers bench failed"
else
  emit embed_transformers '{"skipped": "torch/transformers not installed"}'
fi

# ---- RQ-KMeans speed ---------------------------------------------------------------------------
for ppc in 256 4096; do
  line=$("$SIDTOOL" bench kmeans --data "$W/gmm.parquet" --k "$K" --niter 20 \
    --max-points-per-centroid "$ppc" --device "$DEVICE" 2>/dev/null | tail -1)
  [ -n "$line" ] && emit kmeans_speed "$line" || fail kmeans_speed "bench kmeans failed"
done

# ---- RQ-VAE epoch time against PyTorch --------------------------------------------------------
if "$SIDTOOL" train "$W/gmm.parquet" --out "$W/v-speed" --method rq-vae --codebook-sizes "$RQVAE_SIZES" \
  --epochs "$EPOCHS" --device "$DEVICE" -q; then
  emit rqvae_epoch_sidtool "$(python3 -c 'import json,statistics,sys; s=json.load(open(sys.argv[1]))["epoch_seconds"]; print(json.dumps({"epoch_seconds": s, "median_epoch_s": statistics.median(s)}))' "$W/v-speed/config.json")"
else
  fail rqvae_epoch_sidtool "rq-vae training failed"
fi
if have_torch; then
  line=$(python3 bench/torch_rqvae_bench.py --data "$W/gmm.npy" --epochs "$EPOCHS" \
    --codebook-sizes "$RQVAE_SIZES" --device "$(torch_device)" 2>/dev/null | tail -1)
  [ -n "$line" ] && emit rqvae_epoch_torch "$line" || fail rqvae_epoch_torch "torch rq-vae failed"
else
  emit rqvae_epoch_torch '{"skipped": "torch not installed"}'
fi

emit done "{\"ok\": $([ $FAILED = 0 ] && echo true || echo false)}"
exit $FAILED
