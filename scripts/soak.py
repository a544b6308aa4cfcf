"""Soak test: >= 1,000,000 env steps; reports RSS at start/end and throughput per segment.

Usage: python scripts/soak.py [--env disagg/SmallRoute-v3] [--steps 1000000] [--segments 10] [--out soak.json]
Memory must stay flat (the recorder keeps streaming statistics only) and throughput must not decay.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import gymnasium as gym
import numpy as np

import disagg_gym  # noqa: F401
from disagg_gym.io import atomic_write_json


def rss_mb() -> float:
    """Current resident set size in MB (from /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="disagg/SmallRoute-v3")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = gym.make(args.env).unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    nvec = [int(x) for x in env.action_space.nvec]
    offs = np.cumsum([0] + nvec[:-1]).tolist()
    per_seg = args.steps // args.segments
    rows = []
    start_rss = rss_mb()
    episodes = 0
    for seg in range(args.segments):
        t0 = time.perf_counter()
        for _ in range(per_seg):
            mask = env.action_masks()
            act = [int(rng.choice(np.flatnonzero(mask[o:o + k]))) for o, k in zip(offs, nvec)]
            obs, r, term, trunc, _ = env.step(np.asarray(act))
            if not np.all(np.isfinite(obs)) or not np.isfinite(r):
                raise SystemExit(f"non-finite observation or reward at segment {seg}")
            if term or trunc:
                episodes += 1
                env.reset(seed=int(rng.integers(2**31)))
        dt = time.perf_counter() - t0
        rows.append({"segment": seg, "steps": per_seg, "steps_per_s": per_seg / dt, "rss_mb": rss_mb()})
        print(f"segment {seg}: {per_seg / dt:,.0f} steps/s, RSS {rows[-1]['rss_mb']:.1f} MB", flush=True)
    res = {
        "env": args.env, "steps": per_seg * args.segments, "episodes": episodes,
        "rss_start_mb": start_rss, "rss_end_mb": rows[-1]["rss_mb"],
        "first_segment_steps_per_s": rows[0]["steps_per_s"], "last_segment_steps_per_s": rows[-1]["steps_per_s"],
        "segments": rows,
    }
    print(json.dumps({k: v for k, v in res.items() if k != "segments"}))
    if args.out:
        atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
