"""Digest of every finished request's record, per standard config and seed.

Prints one SHA-256 per (config, seed) over the recorder's per-request records, the summary
(minus wall-clock fields) and the event count, plus a digest of a short env rollout for the
allocation configs. Used to show a hot-path change leaves simulated results bit-identical::

    .venv/bin/python scripts/record_digest.py --json before.json
    # ... change the code, reinstall ...
    .venv/bin/python scripts/record_digest.py --json after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace


def _digest(obj: object) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def sim_digest(name: str, seed: int, horizon_cap_s: float) -> tuple[str, int, int]:
    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    scen = load_scenario(name)
    scen = replace(scen, horizon_s=min(scen.horizon_s, horizon_cap_s))
    sim = Simulation(scen, seed=seed, keep_records=True)
    out = sim.run()
    summary = {k: v for k, v in sorted(out.items()) if "wall" not in k}
    return _digest((sim.recorder.records, summary)), out["requests_total"], out["events"]


def env_digest(name: str, seed: int, steps: int) -> str:
    import gymnasium as gym

    import disagg_gym  # noqa: F401  (registers the ids)
    from disagg_gym.env.registration import STANDARD_CONFIGS, env_id_for

    env = gym.make(env_id_for(name, STANDARD_CONFIGS[name]))
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trail = [obs.tolist() if hasattr(obs, "tolist") else repr(obs)]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        trail.append((obs.tolist() if hasattr(obs, "tolist") else repr(obs), float(r), term, trunc))
        if term or trunc:
            break
    env.close()
    return _digest(trail)


def main(argv: list[str] | None = None) -> int:
    from disagg_gym.scenario import standard_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="*", default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--horizon-cap", type=float, default=1e9, help="cap on each config's horizon (s)")
    ap.add_argument("--env-steps", type=int, default=8, help="env steps for the allocation configs")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare", default=None, help="a previous --json output to compare against")
    a = ap.parse_args(argv)
    res: dict[str, str] = {}
    for name in a.configs or standard_names():
        for seed in a.seeds:
            t0 = time.perf_counter()
            d, n, ev = sim_digest(name, seed, a.horizon_cap)
            res[f"sim:{name}:{seed}"] = d
            print(f"sim {name:22s} seed {seed}: {d}  ({n} requests, {ev} events, {time.perf_counter() - t0:.1f} s)",
                  flush=True)
            if name.endswith("-allocate"):
                res[f"env:{name}:{seed}"] = e = env_digest(name, seed, a.env_steps)
                print(f"env {name:22s} seed {seed}: {e}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    if a.compare:
        with open(a.compare) as f:
            old = json.load(f)
        diff = [k for k in res if old.get(k) != res[k]]
        print("identical" if not diff else f"DIFFERENT: {', '.join(diff)}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
