#!/usr/bin/env bash
# Create .venv/ beside this repository and install the project into it, with the extras for
# the sparse solver (scikit-sparse/CHOLMOD), tests (mpmath, GTSAM as oracles) and viewing
# (matplotlib, Open3D).
#
# torch is installed first, on its own: a plain "torch" requirement resolved from nothing
# pulls a multi-GB CUDA build on Linux.  TORCH_SPEC picks the build (default: the CPU wheel
# this machine keeps on disk); e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# System libraries, as root on Debian/Ubuntu: SuiteSparse headers to build scikit-sparse
# (CHOLMOD), OpenBLAS (CHOLMOD's supernodal factorization is ~3x faster on it than on the
# reference BLAS), and libusb-1.0, which Open3D's wheel links.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in libsuitesparse-dev libopenblas0-pthread libusb-1.0-0; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
else
    echo "note: not root; install SuiteSparse (libsuitesparse-dev), OpenBLAS and libusb-1.0 yourself" >&2
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
.venv/bin/python -m pip install -q $TORCH_SPEC
# scikit-sparse 0.5 needs SuiteSparse 7; with an older system SuiteSparse take 0.4.x.
config=/usr/include/suitesparse/SuiteSparse_config.h
if [ -f "$config" ] && grep -Eq "define SUITESPARSE_MAIN_VERSION +[56]\b" "$config"; then
    .venv/bin/python -m pip install -q "scikit-sparse>=0.4.12,<0.5"
fi
.venv/bin/python -m pip install -q -e ".[sparse,test,viz]"
echo "installed into $(pwd)/.venv"
