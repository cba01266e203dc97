#!/usr/bin/env bash
# Install libtorch 2.13.0 (the version tch 0.26 expects) for the `torch` cargo feature, from the
# PyPI torch wheel: PyPI has no CPU-only torch for Linux x86-64, and the CUDA wheel's CPU
# libraries work on a machine with no GPU once the CUDA runtime and CUPTI libraries it links are
# beside it. The CUDA-only libraries are then deleted (about half the 1.2 GB); torch-sys links
# torch_cuda only when libtorch_cuda.so exists, so the build is a CPU one.
#
# Idempotent: the result is cached under ${PTSEL_CACHE:-~/.cache/ptsel}/libtorch and reused.
# Prints the environment to export (eval "$(scripts/install-libtorch.sh)").
set -euo pipefail

TORCH_VERSION=2.13.0
CACHE="${PTSEL_CACHE:-$HOME/.cache/ptsel}"
DIR="$CACHE/libtorch"
STAMP="$DIR/.ptsel-installed-$TORCH_VERSION"

if [[ ! -f "$STAMP" ]]; then
    mkdir -p "$CACHE"
    # Install into a fresh folder and rename at the end, so an interrupted run leaves no half
    # install under the final name.
    tmp="$(mktemp -d "$CACHE/libtorch.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    echo "install-libtorch: installing torch==$TORCH_VERSION into $DIR" >&2
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" \
        "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
    rm -f "$tmp"/torch/lib/libtorch_cuda*.so "$tmp"/torch/lib/libtorch_python.so \
        "$tmp"/torch/lib/libtorch_nvshmem.so "$tmp"/torch/lib/libc10_cuda.so
    touch "$tmp/.ptsel-installed-$TORCH_VERSION"
    rm -rf "$DIR"
    mv "$tmp" "$DIR"
    trap - EXIT
fi

echo "export LIBTORCH=$DIR/torch"
