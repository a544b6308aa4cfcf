#!/usr/bin/env bash
# The simulator and env tests on the oldest numpy pyproject.toml allows (numpy>=1.24): a venv of
# its own, .venv-numpy-floor, with numpy 1.24 and the core dependencies only (the [rl], [plots]
# and [ray] extras' tests skip there). The checkout is used from PYTHONPATH. Run by .ci/run;
# about a minute. Exit status: 3 when the packages cannot be installed (the caller reports that
# and moves on), else pytest's.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
V=.venv-numpy-floor
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }
if [ ! -x "$V/bin/python" ]; then "$PY" -m venv "$V" || exit 3; fi
quiet "$V/bin/python" -m pip install -q "numpy==1.24.*" "pyyaml>=6" "gymnasium>=1.0,<2" "pytest>=8" \
  "hypothesis>=6.100" "pytest-xdist>=3.5" || exit 3
echo "numpy floor check: $("$V/bin/python" -c 'import numpy, gymnasium; print(f"numpy {numpy.__version__}, gymnasium {gymnasium.__version__}")')"
PYTHONPATH=. "$V/bin/python" -m pytest -q -n 2 -p no:cacheprovider tests/sim tests/workload tests/cluster \
  tests/interconnect tests/metrics tests/hardware tests/env tests/test_simulation.py tests/test_bounds.py
