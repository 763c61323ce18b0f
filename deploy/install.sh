#!/bin/sh
# Install DeviceCare from its wheel into a new virtual environment, with the dependencies pinned
# and hash-checked by the runtime lock. The container image is built with this script, and
# tests/integration/test_installed_wheel.py runs it, so the image's install step is tested.
#
# Usage: deploy/install.sh VENV WHEEL [LOCK]
#   VENV   where the environment goes (created; e.g. /opt/devicecare)
#   WHEEL  the devicecare-*.whl to install
#   LOCK   the lock file (default: requirements/runtime.txt beside this script's folder)
# PYTHON names the interpreter (default: python3, 3.11 or later); UV names uv (default: the one
# on PATH; `pip install uv` brings it). uv reads its own settings from the environment, e.g.
# UV_COMPILE_BYTECODE=1 (the image sets it) or UV_CACHE_DIR.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: $0 VENV WHEEL [LOCK]" >&2
    exit 2
fi
venv=$1
wheel=$2
lock=${3:-$(dirname "$0")/../requirements/runtime.txt}
python=${PYTHON:-python3}
uv=${UV:-uv}
# Trust the machine's certificate store, as pip does: a district's proxy CA is usually there.
UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}
export UV_SYSTEM_CERTS

# uv, not pip, installs: the same hash checks, in seconds rather than minutes.
"$python" -m venv --without-pip "$venv"
# Exactly the lock: each file checked against its hash, a dependency the lock doesn't pin
# refused, and anything else in an existing VENV (an older version's leftovers) removed.
"$uv" pip sync --quiet --python "$venv/bin/python" --require-hashes "$lock"
# The wheel itself adds nothing: its dependencies are the ones just installed.
"$uv" pip install --quiet --python "$venv/bin/python" --no-deps "$wheel"
# A lock that no longer satisfies the wheel's requirements fails here, not at first start.
"$uv" pip check --quiet --python "$venv/bin/python"
"$venv/bin/devicecare" --version
