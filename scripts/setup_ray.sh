#!/usr/bin/env bash
# Creates .venv-ray (if needed) and installs disagg-gym with its test and ray extras.
# A separate venv because ray[rllib] pins an older gymnasium (2.60: gymnasium==1.2.2) while .venv
# keeps the newest. torch is pinned first: the CPU wheel where pip's configuration offers it
# (the project VM's /opt/wheels); from plain PyPI it is the CUDA build (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-ray/bin/python ]; then
  "$PY" -m venv .venv-ray
fi
# pip's notes about this machine's unused local package folders are noise: filter them out.
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }
quiet .venv-ray/bin/python -m pip install -q --upgrade pip >/dev/null
quiet .venv-ray/bin/python -m pip install -q "torch==2.13.0"
rm -rf build  # stale files in build/lib would be installed too (scripts/setup.sh)
quiet .venv-ray/bin/python -m pip install -q ".[test,rl,plots,ray]"
echo "disagg-gym installed in .venv-ray ($(.venv-ray/bin/python -c 'import disagg_gym, ray, gymnasium; print(disagg_gym.__version__, "ray", ray.__version__, "gymnasium", gymnasium.__version__)'))"
