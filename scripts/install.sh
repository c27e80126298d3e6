#!/usr/bin/env bash
# Create .venv/ beside this repository and install the project into it, with the extras for tests
# (mpmath, GTSAM as oracles) and viewing (matplotlib, Open3D), all from wheels; then CHOLMOD
# (scikit-sparse), an optional accelerator, where it can be built.
#
# scikit-sparse has no wheel for Linux: it builds against SuiteSparse's headers (Debian:
# libsuitesparse-dev) with a C compiler.  As root on Debian/Ubuntu this script installs them; without
# them it skips scikit-sparse with one note line, and the sparse solver runs from wheels (the numba
# block Cholesky on SuperLU's ordering; benchmarks/solvers_without_cholmod.py compares it with CHOLMOD).
#
# torch is installed first, on its own: a plain "torch" requirement resolved from nothing
# pulls a multi-GB CUDA build on Linux.  TORCH_SPEC picks the build (default: the CPU wheel
# this machine keeps on disk); e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu".
# SUITESPARSE_INCLUDE: where SuiteSparse's headers are (default /usr/include/suitesparse).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
SUITESPARSE_INCLUDE=${SUITESPARSE_INCLUDE:-/usr/include/suitesparse}

# System libraries, as root on Debian/Ubuntu: SuiteSparse headers to build scikit-sparse
# (CHOLMOD), OpenBLAS (CHOLMOD's supernodal factorization is ~3x faster on it than on the
# reference BLAS), and libusb-1.0, which Open3D's wheel links.  Without root: whatever is there.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in libsuitesparse-dev libopenblas0-pthread libusb-1.0-0; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086  # one word per package
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; }; then
            echo "note: apt-get could not install$missing; going on without" >&2
        fi
    fi
elif command -v dpkg >/dev/null; then
    missing=""
    for pkg in libopenblas0-pthread libusb-1.0-0; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    [ -z "$missing" ] || echo "note: not root; install$missing yourself for a faster BLAS and Open3D's views" >&2
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
.venv/bin/python -m pip install -q $TORCH_SPEC
.venv/bin/python -m pip install -q -e ".[test,viz]"

# CHOLMOD, where SuiteSparse's headers and a C compiler are there.  scikit-sparse 0.5 needs
# SuiteSparse 7; with an older system SuiteSparse take 0.4.x.
config="$SUITESPARSE_INCLUDE/SuiteSparse_config.h"
if [ -f "$SUITESPARSE_INCLUDE/cholmod.h" ] && [ -f "$config" ] && command -v "${CC:-cc}" >/dev/null; then
    spec="scikit-sparse>=0.4.12"
    if grep -Eq "define SUITESPARSE_MAIN_VERSION +[56]\b" "$config"; then
        spec="scikit-sparse>=0.4.12,<0.5"
    fi
    if ! SUITESPARSE_INCLUDE_DIR="$SUITESPARSE_INCLUDE" .venv/bin/python -m pip install -q "$spec"; then
        echo "note: scikit-sparse (CHOLMOD, optional) did not build; the sparse solver runs from wheels" >&2
    fi
else
    echo "note: no SuiteSparse headers ($SUITESPARSE_INCLUDE/cholmod.h; Debian: libsuitesparse-dev) or no C compiler:" \
         "skipping scikit-sparse (CHOLMOD, optional); the sparse solver runs from wheels" >&2
fi
echo "installed into $(pwd)/.venv"
