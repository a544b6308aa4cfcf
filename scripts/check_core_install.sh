#!/usr/bin/env bash
# The core install (issue #20): a fresh venv (no system site packages) with `pip install .` and
# no extras gives the simulator, every env id and the core commands, without torch, SB3 or
# matplotlib; a command that needs an extra says which one in one line. Needs PyPI (numpy,
# pyyaml, gymnasium). Run by .ci/run after the README test command; ~1-2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
V="$TMP/venv/bin"
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }
quiet "$V/python" -m pip install -q --upgrade pip >/dev/null
# build from a copy so no build/ or egg-info is left in the checkout
git ls-files -z | tar --null -T - -cf - | (mkdir "$TMP/src" && tar -xf - -C "$TMP/src")
quiet "$V/python" -m pip install -q "$TMP/src"
# Nothing of the checkout on sys.path; but ../shared (trace files that the trace-replay configs read
# by a path relative to the working directory) resolves as it does from the checkout.
SHARED=$(cd .. && pwd)/shared
mkdir "$TMP/w"
if [ -d "$SHARED" ]; then ln -s "$SHARED" "$TMP/shared"; fi
cd "$TMP/w"
"$V/python" - <<'PY'
import importlib.util
import gymnasium as gym
import numpy as np

for heavy in ("torch", "stable_baselines3", "sb3_contrib", "tensorboard", "matplotlib", "rich", "tqdm"):
    assert importlib.util.find_spec(heavy) is None, f"core install pulled in {heavy}"
import disagg_gym
from disagg_gym.env.registration import registered_ids, standard_env_for
from disagg_gym.scenario import load_scenario

ids = registered_ids()
assert len(ids) >= 9, ids
shared = __import__("pathlib").Path("../shared/data/traces").is_dir()
for env_id in ids:
    replays = load_scenario(standard_env_for(env_id)["config"]).workload.kind == "trace"
    if replays and not shared:
        print(f"core install: {env_id} skipped (replays ../shared/data/traces, absent here)")
        continue
    env = gym.make(env_id, overrides={"horizon_s": 2})
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.all(np.isfinite(obs)), env_id
    env.close()
print(f"core install: gym.make + reset + step OK for {len(ids)} ids, no torch/SB3/matplotlib")
PY
"$V/disagg-gym" simulate --horizon 5 >/dev/null
"$V/disagg-gym" list >/dev/null
"$V/disagg-gym" list --policies --json >/dev/null
"$V/disagg-gym" predict --gpu h100-sxm --model llama-3.1-8b --phase decode --batch 8 --length 512 >/dev/null
"$V/disagg-gym" evaluate --env disagg/SmallRoute-v3 --policy heuristic:jsq --episodes 1 --overrides horizon_s=2 >/dev/null
check_extra() {  # command needing an extra: exit 2, one stderr line naming the extra
  local extra=$1; shift
  set +e
  err=$("$V/disagg-gym" "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" != 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" != 1 ] || ! grep -qF "pip install \"disagg-gym[$extra]\"" <<<"$err"; then
    echo "check_core_install: 'disagg-gym $*' should exit 2 with one line naming [$extra]; got rc=$rc: $err" >&2
    exit 1
  fi
}
check_extra rl train --env disagg/SmallRoute-v3 --timesteps 64 --out "$TMP/run"
check_extra rl validate
check_extra rl benchmark --configs disagg/SmallRoute-v3 --out "$TMP/lb"
check_extra plots simulate --horizon 5 --plots "$TMP/plots"
echo "check_core_install: OK (simulate, list, predict, evaluate run; train/validate/benchmark/--plots name their extra)"
