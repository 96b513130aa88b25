#!/usr/bin/env bash
# Install what the benchmark needs when missing (Debian/Ubuntu, via apt-get), then run it.
# Idempotent: a second run installs nothing. Arguments go to bench/run.py:
#     bash bench/setup.sh                 # the full run, EC P-256 and RSA 2048 (~15 minutes)
#     bash bench/setup.sh --quick         # seconds; what tests/test_bench_smoke.py runs
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || need+=(stunnel4)
command -v hitch >/dev/null || [ -x /usr/sbin/hitch ] || need+=(hitch)
command -v openssl >/dev/null || need+=(openssl)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v python3 >/dev/null || need+=(python3)
[ -x .venv/bin/tlswrap ] || python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bench/setup.sh: installing ${need[*]}" >&2
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

# tlswrap itself, from this checkout, unless a venv already has it.
if [ ! -x .venv/bin/tlswrap ]; then
    [ -d .venv ] || python3 -m venv .venv
    .venv/bin/pip install -q -e .
fi

exec python3 bench/run.py "$@"
