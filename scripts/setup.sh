#!/usr/bin/env bash
# Creates .venv (if needed) and installs disagg-gym with its test, rl and plots extras.
# torch is pinned first; it is the CPU wheel where pip's configuration offers it (the project VM's
# /opt/wheels); from plain PyPI torch==2.13.0 is the multi-GB CUDA build (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's notes about this machine's unused local package folders are noise: filter them out.
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }
quiet .venv/bin/python -m pip install -q --upgrade pip >/dev/null
quiet .venv/bin/python -m pip install -q "torch==2.13.0"
# setuptools builds in ./build and keeps old files there: a module deleted from the checkout
# would still be installed from build/lib. Build from a clean slate, and leave none behind (a
# later `pip install .` or `pip wheel .` would reuse it).
rm -rf build
quiet .venv/bin/python -m pip install -q ".[test,rl,plots]"
rm -rf build
echo "disagg-gym installed in .venv ($(.venv/bin/python -c 'import disagg_gym; print(disagg_gym.__version__)'))"
