"""The JSQ / P2C routers' inlined choice loops pick what the plain ``min`` over their keys picks."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from disagg_gym.cluster.instance import Instance
from disagg_gym.cluster.policies import _least_pressure, _least_queued, decode_pressure


def _inst(rng: random.Random, idx: int) -> SimpleNamespace:
    b = SimpleNamespace(B=rng.randint(0, 8), joiners=[0] * rng.randint(0, 2))
    kv = SimpleNamespace(capacity=rng.choice([0, 1600, 3200]), used=0)
    kv.used = rng.randrange(0, kv.capacity + 1, 16) if kv.capacity else 0
    i = SimpleNamespace(idx=idx, batch=b, kv=kv, incoming=rng.randint(0, 2), dq=[0] * rng.randint(0, 2),
                        swapped=[0] * rng.randint(0, 1), swapping=rng.randint(0, 1), max_batch=rng.choice([4, 8, 16]),
                        pq=SimpleNamespace(tokens=rng.choice([0, 100, 200, 300])), prefill_busy=rng.random() < 0.5,
                        token_budget=rng.choice([100, 200]))
    # the read-only views decode_pressure uses, computed by Instance's own properties (so the
    # routers' inlined loops are checked against the real views, not a copy of them)
    i.decode_load = Instance.decode_load.fget(i)
    i.kv_used, i.kv_cap = Instance.kv_used.fget(i), Instance.kv_cap.fget(i)
    return i


@pytest.mark.parametrize("seed", range(2))
def test_inlined_router_keys_match_min_over_the_keys(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        insts = [_inst(rng, k) for k in range(rng.randint(1, 9))]
        rng.shuffle(insts)  # ties must still go to the lowest index, wherever it stands
        assert _least_pressure(insts) is min(insts, key=lambda i: (decode_pressure(i), i.idx))
        want = min(insts, key=lambda i: (i.pq.tokens + (i.token_budget if i.prefill_busy else 0), i.idx))
        assert _least_queued(insts) is want
