#!/bin/sh
# How the container starts DeviceCare: `entrypoint.sh web` runs `devicecare web` from the
# environment deploy/install.sh made (DEVICECARE_VENV, default /opt/devicecare).
# tests/integration/test_installed_wheel.py starts the installed service through it.
set -eu

# Photos and exports are students' records: files DeviceCare writes are not world-readable.
umask 027
exec "${DEVICECARE_VENV:-/opt/devicecare}/bin/devicecare" "$@"
