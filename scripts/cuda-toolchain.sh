#!/usr/bin/env bash
# The CUDA toolchain for `cargo build --features cuda` on a machine without a GPU, a driver or a
# system CUDA, from pinned PyPI wheels only (docs/gpu.md). Writes, under
# ${CARGO_TARGET_DIR:-target}/cuda-toolchain/:
#   wheels/nvidia/cu13/   nvcc, cicc, ptxas, the headers and libcudart_static.a (the wheels)
#   root/lib/libcudart.so a linker script: candle-kernels' `-lcudart` takes the static runtime,
#                         which opens libcuda.so.1 only when a device is created
#   cudarc-0.19.10/       cudarc from its crates.io archive (checked against Cargo.lock) with
#                         scripts/cuda/cudarc-dynamic-loading.patch: no `-l` lines, CUDA libraries
#                         loaded at run time
#   env                   to `source`: PATH, CUDA_ROOT, CUDA_COMPUTE_CAP, SIDTOOL_CUDARC
# Idempotent: a no-op when everything is there for this script and patch. Needs python3 with
# pip (PyPI access), tar, patch and sha256sum; the build then needs g++ (nvcc's host
# compiler). Run from anywhere; paths are the repo root's.
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
tc="$target/cuda-toolchain"
patch_file=scripts/cuda/cudarc-dynamic-loading.patch
cudarc=cudarc-0.19.10
# Pin every one: unpinned, nvidia-nvvm resolves to a newer CUDA than the driver (R580) of the
# GPU machines this binary is carried to.
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)
# H200/H100 (sm_90); candle-kernels compiles its PTX and static kernels for this. Without a
# GPU here there is no nvidia-smi to ask.
compute_cap=90

stamp=$(cat "$0" "$patch_file" | sha256sum | cut -d' ' -f1)
if [[ -f $tc/env && $(cat "$tc/stamp" 2>/dev/null) == "$stamp" ]]; then
  exit 0
fi
echo "cuda-toolchain: setting up $tc" >&2
mkdir -p "$tc"
rm -f "$tc/stamp"
# Each part is redone only when it would change: a cudarc copy unpacked anew (new mtimes) would
# make cargo rebuild cudarc and everything above it.
write() { # file content: only when it differs
  [[ -f $1 && $(cat "$1") == "$2" ]] || printf '%s\n' "$2" >"$1"
}

# The wheels, without their dependencies (all pinned above).
tk="$tc/wheels/nvidia/cu13"
if [[ $(cat "$tc/wheels/pins" 2>/dev/null) != "${wheels[*]}" ]]; then
  rm -rf "$tc/wheels"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --no-deps --only-binary=:all: --target "$tc/wheels" "${wheels[@]}"
  for f in bin/nvcc nvvm/bin/cicc bin/ptxas lib/libcudart_static.a include/cuda_runtime.h; do
    [[ -e $tk/$f ]] || { echo "cuda-toolchain: $tk/$f missing after pip install" >&2; exit 1; }
  done
  echo "${wheels[*]}" >"$tc/wheels/pins"
fi

# -lcudart → the static runtime. ld reads a text file named libcudart.so as a linker script.
mkdir -p "$tc/root/lib"
write "$tc/root/lib/libcudart.so" "INPUT(\"$tk/lib/libcudart_static.a\")"

# cudarc: the very archive Cargo.lock names (its checksum), unpacked and patched.
version=$(awk '/^name = "cudarc"$/ { getline; print $3; exit }' Cargo.lock | tr -d '"')
want=$(awk '/^name = "cudarc"$/ { f = 1 } f && /^checksum/ { print $3; exit }' Cargo.lock | tr -d '"')
if [[ $version != "${cudarc#cudarc-}" ]]; then
  echo "cuda-toolchain: Cargo.lock has cudarc $version, the patch is for $cudarc" >&2
  exit 1
fi
archive() { compgen -G "${CARGO_HOME:-$HOME/.cargo}/registry/cache/*/$cudarc.crate" | head -1 || true; }
crate=$(archive)
if [[ -z $crate ]]; then
  cargo fetch --locked >&2
  crate=$(archive)
fi
have=$(sha256sum "$crate" | cut -d' ' -f1)
if [[ $have != "$want" ]]; then
  echo "cuda-toolchain: $crate has sha256 $have, Cargo.lock says $want" >&2
  exit 1
fi
rm -rf "$tc/new"
mkdir "$tc/new"
tar -xzf "$crate" -C "$tc/new"
patch --quiet -d "$tc/new/$cudarc" -p1 <"$patch_file"
if diff -rq "$tc/new/$cudarc" "$tc/$cudarc" >/dev/null 2>&1; then
  rm -rf "$tc/new"
else
  rm -rf "${tc:?}/$cudarc"
  mv "$tc/new/$cudarc" "$tc/$cudarc"
  rmdir "$tc/new"
fi

write "$tc/env" "# Written by scripts/cuda-toolchain.sh: source it before cargo ... --features cuda (see
# scripts/cuda-build.sh, which also patches cudarc with \$SIDTOOL_CUDARC).
export PATH=\"$tk/bin:\$PATH\"
export CUDA_ROOT=\"$tc/root\"
export CUDA_COMPUTE_CAP=$compute_cap
export SIDTOOL_CUDARC=\"$tc/$cudarc\"
# A system CUDA must not mix with the wheels' (cudarc and cudaforge read these).
unset CUDA_HOME CUDA_PATH CUDA_TOOLKIT_ROOT_DIR CUDNN_LIB NVCC"
echo "$stamp" >"$tc/stamp"
echo "cuda-toolchain: ready ($(nvcc_v=$("$tk/bin/nvcc" --version | tail -2 | head -1); echo "$nvcc_v"))" >&2
