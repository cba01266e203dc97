#!/usr/bin/env bash
# Prepared check for a GPU machine that has no Rust toolchain: run from the repository root with
# release binaries built elsewhere and carried along (`cargo build --release --bin ptsel
# --example gpu_check`: target/release/ptsel and target/release/examples/gpu_check, or
# $PTSEL_BIN and $PTSEL_GPU_CHECK). Finds NVRTC and cuda_fp16.h in the machine's Python NVIDIA
# wheels, compiles the kernels, then gpu_check compares CUDA with the CPU on seeded random data
# and measures throughput.
# Per batch size it prints the ids identical to the CPU's and the share once ties are set aside
# (docs/CLI.md promises 100%), whether each query gets the same ids and scores when sent alone,
# and how many tensor-core queries were re-scored with f32 queries; a line starts with FAIL when
# a promise is broken. Everything goes to stdout; the exit status is non-zero if a step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${PTSEL_BIN:-target/release/ptsel}
CHECK=${PTSEL_GPU_CHECK:-target/release/examples/gpu_check}
echo "== machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi not available"
nproc
for b in "$BIN" "$CHECK"; do
  [ -x "$b" ] || { echo "no executable $b: build it with cargo build --release --bin ptsel --example gpu_check and carry it"; exit 2; }
done

echo "== NVRTC"
PY=$(command -v python3 || command -v python || true)
roots=()
if [ -n "$PY" ]; then
  echo "python: $PY ($("$PY" --version 2>&1))"
  # nvidia is a namespace package: list every folder it spans.
  while IFS= read -r d; do [ -n "$d" ] && roots+=("$d"); done < <("$PY" -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)
  while IFS= read -r d; do [ -d "$d/nvidia" ] && roots+=("$d/nvidia"); done < <("$PY" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
fi
roots+=("$HOME/.cache/ptsel/nvrtc/nvidia" /usr/local/cuda)
echo "searching: ${roots[*]}"
lib=""; inc=""
for r in "${roots[@]}"; do
  [ -d "$r" ] || continue
  [ -z "$lib" ] && lib=$(find -L "$r" -maxdepth 4 -name 'libnvrtc.so.13*' -printf '%h\n' 2>/dev/null | head -1)
  [ -z "$lib" ] && lib=$(find -L "$r" -maxdepth 4 -name 'libnvrtc.so*' ! -name '*builtins*' -printf '%h\n' 2>/dev/null | head -1)
  [ -z "$inc" ] && inc=$(find -L "$r" -maxdepth 4 -name cuda_fp16.h -printf '%h\n' 2>/dev/null | head -1)
done
echo "nvrtc lib folder: ${lib:-NOT FOUND}"
echo "cuda_fp16.h folder: ${inc:-NOT FOUND}"
[ -n "$lib" ] && ls "$lib" | grep -E 'nvrtc|cudart' | sed 's/^/  /'
[ -n "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -n "$inc" ] && export PTSEL_CUDA_INCLUDE="$inc"

status=0
echo "== ptsel kernels --check"
"$BIN" kernels --check || status=1
echo "== gpu_check"
"$CHECK" "$@" || status=1
echo "== exit status $status"
exit $status
