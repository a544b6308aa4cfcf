"""Diagnoses what a learner sees on a route env: reward per step, observation scale, credit delay.

Runs one episode with masked-random routing and prints: steps per episode, the reward's mean,
std and non-zero share per step, the per-feature std of the instance features (are they O(1)?)
and, in decisions, how long after a routing decision its request's outcome reaches the reward
(per_decision: from ``info["credit"]``; aggregate: the request's completion).

    python scripts/credit_delay.py --env-id disagg/SmallRoute-v3 [--overrides '{"env.reward_mode": "aggregate"}']
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import disagg_gym  # noqa: F401
from disagg_gym.env.observation import INSTANCE_FEATURES
from disagg_gym_agents.registry import POLICIES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env-id", default="disagg/SmallRoute-v3")
    p.add_argument("--overrides", default="{}")
    p.add_argument("--seed", type=int, default=10_000)
    a = p.parse_args()
    env = gym.make(a.env_id, overrides=json.loads(a.overrides))
    u = env.unwrapped
    pol = POLICIES.get("random")(env, seed=0)
    obs, _ = env.reset(seed=a.seed, options={"workload_seed": a.seed})
    rewards, rows, lags, routed = [], [], [], []
    while True:
        routed.append(u.cluster.pending)
        act, _ = pol.predict(obs)
        obs, r, term, trunc, info = env.step(act)
        rewards.append(float(r))
        nf = len(INSTANCE_FEATURES)
        rows.append(np.asarray(obs, dtype=np.float64)[: u.n * nf].reshape(u.n, nf))
        lags += [len(rewards) - 1 - int(d) for d in info.get("credit", {})]
        if term or trunc:
            break
    r = np.asarray(rewards)
    print(f"{a.env_id} {a.overrides}: {len(r)} steps; reward/step mean {r.mean():.3f} std {r.std():.3f} "
          f"non-zero {np.mean(r != 0):.2f}")
    std = np.stack(rows).std(axis=0).max(axis=0)  # per feature, the most variable instance
    print("instance feature std: " + ", ".join(f"{f[0]} {s:.3f}" for f, s in zip(INSTANCE_FEATURES, std)))
    # completion lag in decisions: arrivals are the decisions, so count decisions made in between
    t_dec = np.asarray([q.arrival_s for q in routed])
    done = [q.completion_s for q in routed if q.completion_s is not None]
    comp = np.searchsorted(t_dec, done) - np.arange(len(routed))[[q.completion_s is not None for q in routed]]
    print(f"completion lag (decisions): median {np.median(comp):.0f}, p90 {np.percentile(comp, 90):.0f}")
    if lags:
        print(f"per_decision credit lag (decisions): median {np.median(lags):.0f}, p90 {np.percentile(lags, 90):.0f}")


if __name__ == "__main__":
    main()
