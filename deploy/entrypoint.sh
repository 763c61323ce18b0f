#!/bin/sh
# How the container starts DeviceCare: `entrypoint.sh web` runs `devicecare web` from the
# environment deploy/install.sh made (DEVICECARE_VENV, default /opt/devicecare).
# tests/integration/test_installed_wheel.py starts the installed service through it.
set -eu

# A platform that runs the Procfile's lines in the image passes `devicecare web`: the same.
if [ "${1:-}" = "devicecare" ]; then
    shift
fi
# Photos and exports are students' records: files DeviceCare writes are not world-readable.
umask 027
exec "${DEVICECARE_VENV:-/opt/devicecare}/bin/devicecare" "$@"
