#!/usr/bin/env bash
# Cross-checks the leaderboard statistics against rliable itself (issue #15 item 7: "rliable as
# the library, or tested against it"): tests/agents/test_leaderboard_stats.py::
# test_against_rliable_when_installed (and test_iqm_is_scipy_trim_mean: .venv has no scipy) in a venv of its own, .venv-rliable, because rliable 1.2.0
# does not import with the newest arch (7.x) and pandas (3.x) that .venv may resolve; here it gets
# versions it imports with. The checkout is used from PYTHONPATH (the test needs numpy, scipy,
# pyyaml and gymnasium only).
# Exit status: 3 when the packages cannot be installed or rliable does not import (the caller
# reports that and moves on), else the test's (a skip counts as a failure here).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
V=.venv-rliable
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }
if [ ! -x "$V/bin/python" ]; then "$PY" -m venv "$V" || exit 3; fi
quiet "$V/bin/python" -m pip install -q "rliable==1.2.0" "numpy<2" "scipy<1.14" "pandas<2.3" "arch<7" \
  pytest pyyaml "gymnasium>=1.0,<2" || exit 3
"$V/bin/python" -c "import rliable.library, rliable.metrics" || exit 3
echo "rliable cross-check: $("$V/bin/python" -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("rliable", "numpy", "pandas", "arch")), sep=", ")')"
DISAGG_REQUIRE_RLIABLE=1 PYTHONPATH=. "$V/bin/python" -m pytest -q -p no:cacheprovider \
  tests/agents/test_leaderboard_stats.py -k "test_against_rliable_when_installed or test_iqm_is_scipy_trim_mean"
