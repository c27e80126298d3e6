#!/usr/bin/env bash
# Create .venv/ beside this repository and install the project into it, with the extras for
# tests (scipy, mpmath, GTSAM as oracles) and viewing (matplotlib, Open3D).
#
# torch is installed first, on its own: a plain "torch" requirement resolved from nothing
# pulls a multi-GB CUDA build on Linux.  TORCH_SPEC picks the build (default: the CPU wheel
# this machine keeps on disk); e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# Open3D's wheel links libusb-1.0, which slim Debian images lack.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null
    else
        echo "note: libusb-1.0 is missing; 'import open3d' will fail until it is installed" >&2
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
.venv/bin/python -m pip install -q $TORCH_SPEC
.venv/bin/python -m pip install -q -e ".[test,viz]"
echo "installed into $(pwd)/.venv"
