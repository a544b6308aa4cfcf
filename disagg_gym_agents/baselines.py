"""Domain baselines a practitioner would write (issue #15 item 2), as registered heuristics with
the learned agents' action space.

* ``spillover`` (route): on-prem first, burst to on-demand instances only when the on-prem
  prediction misses the TTFT SLO (``disagg_gym.cluster.policies``).
* ``static_split`` (allocate, joint): a fixed prefill count per GPU type, the best one found
  by search over validation seeds (DistServe-style placement; ``static_split_candidates`` +
  ``disagg-gym tune-baselines --policy static_split``).
* ``sla_planner`` (allocate, joint): Dynamo-style SLA planner -- a load predictor (linear trend
  of the request rate over the last intervals, observed prompt/output lengths) and per-instance
  capacity from the cost model at the SLO targets give the prefill and decode instances needed.
* ``splitwise`` (allocate, joint): Splitwise-style mixed-pool borrowing -- a home split, from
  which instances are lent to the overloaded phase and returned when the load falls.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from disagg_gym.cluster.admission import queue_wait_s
from disagg_gym.cluster.policies import decode_pressure
from disagg_gym.env.serving_env import alloc_count_bounds
from disagg_gym.errors import UserError
from disagg_gym.types import Role
from disagg_gym_agents.heuristics import AllocatorHeuristic
from disagg_gym_agents.registry import POLICIES

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.scenario import ScenarioConfig


# spillover: derived from the simulator router ``spillover`` like every router heuristic
# (disagg_gym_agents.heuristics); ``make_policy("spillover", env, alpha=1.5)`` passes ``alpha``.


# ====================================================================== static split
def _flexible(scen: ScenarioConfig) -> dict[str, int]:
    """Switchable (non-colocated) instances per GPU type, in config order."""
    out: dict[str, int] = {}
    for g in scen.cluster.groups:
        if g.role != "colocated":
            out[g.gpu] = out.get(g.gpu, 0) + g.count
    return out


def static_split_candidates(scen: ScenarioConfig, step: int = 1) -> list[dict[str, int]]:
    """Every prefill count per switchable GPU type that the env's allocation mask allows and
    that leaves at least one prefill and one decode instance in the cluster (the DistServe-style
    placement search space).

    The mask is per GPU type (``alloc_count_bounds``): without colocated instances a type
    with two or more instances keeps 1 .. count - 1 prefill instances, so a split outside that
    range could only run clamped (an 8 for a type of 8 ran as 7) and is not a candidate.
    ``step`` > 1 gives a coarse grid: per GPU type the multiples of ``step`` the mask allows,
    the lowest and highest allowed counts and its initial prefill count (so the default split
    stays a candidate where the mask allows it).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise UserError(f"static_split: the grid step must be a positive integer (got {step!r})")
    flex = _flexible(scen)
    init = initial_prefill_counts(scen)
    n_coloc = sum(g.count for g in scen.cluster.groups if g.role == "colocated")
    gpus = list(flex)
    bounds = alloc_count_bounds([flex[g] for g in gpus], n_coloc) or [(0, flex[g]) for g in gpus]
    values = [
        sorted({c for c in (*range(0, flex[g] + 1, step), init[g]) if lo <= c <= hi} | {lo, hi})
        for g, (lo, hi) in zip(gpus, bounds)
    ]
    out = []
    for counts in itertools.product(*values):
        p = sum(counts)
        d = sum(flex.values()) - p
        if not n_coloc and (p < 1 or d < 1):
            continue
        out.append(dict(zip(gpus, (int(c) for c in counts))))
    return out


def initial_prefill_counts(scen: ScenarioConfig) -> dict[str, int]:
    """Prefill instances per switchable GPU type in the scenario's initial roles: the split
    ``static_split`` holds without ``prefill_counts`` (its default).
    """
    return {
        gpu: sum(g.count for g in scen.cluster.groups if g.gpu == gpu and g.role == "prefill")
        for gpu in _flexible(scen)
    }


@POLICIES.register("static_split")
class StaticSplitPolicy(AllocatorHeuristic):
    """A fixed prefill instance count per GPU type, held for the whole episode.

    The split is a parameter; the best one is found by search over validation seeds
    (``disagg-gym tune-baselines --policy static_split``), as DistServe searches placements
    offline. Without ``prefill_counts`` it holds the scenario's initial roles.

    Args:
        env: A disagg-gym env with an ``allocate`` or ``joint`` task.
        seed: Unused (deterministic).
        prefill_counts: ``{gpu: prefill instances}`` per switchable GPU type.
    """

    name = "static_split"

    def __init__(self, env: gym.Env, seed: int = 0, prefill_counts: dict[str, int] | None = None) -> None:
        super().__init__(env, seed)
        flex = _flexible(self.base.scenario)
        if prefill_counts is None:
            prefill_counts = initial_prefill_counts(self.base.scenario)
        if not isinstance(prefill_counts, dict):
            raise UserError(f"static_split: prefill_counts must be a mapping gpu -> count (got {prefill_counts!r})")
        n_coloc = sum(g.count for g in self.base.scenario.cluster.groups if g.role == "colocated")
        gpus = list(flex)
        # the counts the allocation mask allows (a count outside them would run clamped)
        bounds = dict(zip(gpus, alloc_count_bounds([flex[g] for g in gpus], n_coloc) or [(0, flex[g]) for g in gpus]))
        for gpu, n in prefill_counts.items():
            if gpu not in flex:
                raise UserError(f"static_split: unknown GPU type {gpu!r}; switchable: {', '.join(flex)}")
            lo, hi = bounds[gpu]
            if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
                raise UserError(f"static_split: prefill_counts[{gpu!r}] must be an integer in [{lo}, {hi}], the counts "
                                f"the allocation mask allows for its {flex[gpu]} instances (got {n!r})")
        self.prefill_counts = {g: int(n) for g, n in prefill_counts.items()}

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """The fixed counts."""
        return dict(self.prefill_counts)


# ====================================================================== Dynamo SLA planner
def linear_trend_forecast(history: list[float]) -> float:
    """Next value of ``history`` by a least-squares line (one value: itself), at least 0."""
    n = len(history)
    if n == 0:
        return 0.0
    if n == 1:
        return max(0.0, history[0])
    xs = np.arange(n, dtype=float)
    slope, icpt = np.polyfit(xs, np.asarray(history, dtype=float), 1)
    return max(0.0, float(slope * n + icpt))


def plan_counts(
    rate_per_s: float,
    isl: float,
    osl: float,
    total: int,
    prefill_tokens_per_s: float,
    decode_tokens_per_s: float,
    headroom: float = 1.0,
    colocated: bool = False,
) -> int:
    """Prefill instances of one GPU type from the predicted load (the planner's arithmetic).

    Needed prefill instances: ``ceil(headroom * rate * isl / prefill_tokens_per_s)``; needed
    decode instances: ``ceil(headroom * rate * osl / decode_tokens_per_s)``. When both fit in
    ``total`` they are taken as they are (spare instances go to decode, whose memory binds
    first under load); otherwise ``total`` is split in proportion to the two needs. At least
    one instance of each phase is kept (unless ``colocated`` instances exist).
    """
    need_p = math.ceil(headroom * rate_per_s * isl / prefill_tokens_per_s) if prefill_tokens_per_s > 0 else total
    need_d = math.ceil(headroom * rate_per_s * max(osl - 1.0, 0.0) / decode_tokens_per_s) if decode_tokens_per_s > 0 else total
    if need_p + need_d <= total:
        n_p = need_p
    else:
        n_p = round(total * need_p / max(need_p + need_d, 1))
    lo, hi = (0, total) if colocated else (1, total - 1)
    return int(min(max(n_p, lo), hi))


@POLICIES.register("sla_planner")
class SLAPlannerPolicy(AllocatorHeuristic):
    """Dynamo-style SLA planner: load predictor + capacity from the cost model.

    Every control step it observes the interval's arrival rate and the mean prompt (ISL) and
    output (OSL) lengths of requests finished so far, forecasts the next interval's rate by a
    linear trend over the last ``window`` intervals, and sizes each GPU type's pools:

    * prefill capacity per instance: prompt tokens per second of a full token-budget batch of
      ISL-long prompts, from the instance's cost model;
    * decode capacity per instance: sequences x iterations per second at the largest batch
      whose iteration (context ISL + OSL/2 per sequence) meets the TPOT SLO and whose KV fits.

    Load is shared between GPU types in proportion to their capacity. (Dynamo's planner does
    the same with profiled throughput at the TTFT/ITL targets; its correction factors are left
    out: the cost model is the simulator's.)

    Args:
        env: A disagg-gym env with an ``allocate`` or ``joint`` task.
        seed: Unused (deterministic).
        headroom: Multiplies the predicted load (>= 1 over-provisions).
        window: Intervals the load predictor fits (>= 1).
    """

    name = "sla_planner"

    def __init__(self, env: gym.Env, seed: int = 0, headroom: float = 1.2, window: int = 3) -> None:
        super().__init__(env, seed)
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not headroom > 0:
            raise UserError(f"sla_planner: headroom must be a positive number (got {headroom!r})")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise UserError(f"sla_planner: window must be an integer >= 1 (got {window!r})")
        self.headroom = float(headroom)
        self.window = int(window)

    def start_episode(self, cluster: Cluster) -> None:  # noqa: D102
        super().start_episode(cluster)
        self._rates: deque[float] = deque(maxlen=self.window)
        # The first interval's rate counts from the episode's start, not from this first
        # decision (it divided every arrival so far by 1e-9 s: a forecast of ~1e11 req/s, then 0)
        self._last_t, self._last_arrived = self.base.episode_start
        self._caps: dict[tuple[str, int, int], tuple[float, float]] = {}

    def capacity(self, cluster: Cluster, gpu: str, isl: int, osl: int) -> tuple[float, float]:
        """(prefill prompt tokens/s, decode output tokens/s) of one instance of ``gpu``."""
        key = (gpu, isl, osl)
        hit = self._caps.get(key)
        if hit is not None:
            return hit
        inst = next(i for i in cluster.instances if i.gpu == gpu and i.role is not Role.COLOCATED)
        k = max(1, inst.token_budget // max(isl, 1))
        p_tps = k * isl / inst.cost.prefill_s([isl] * k)
        wl = self.base.scenario.workload
        ctx = isl + osl // 2
        best = 0.0
        b_kv = max(1, inst.kv_cap // max(isl + osl, 1))
        for b in range(1, min(inst.max_batch, b_kv) + 1):
            it = inst.cost.decode_s([ctx] * b)
            if it > wl.slo_tpot_s and b > 1:
                break
            best = max(best, b / it)
        self._caps[key] = (p_tps, best)
        return p_tps, best

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """Prefill count per GPU type from the forecast load."""
        now = cluster.engine.now
        dt = max(now - self._last_t, 1e-9)
        self._rates.append((cluster.arrived - self._last_arrived) / dt)
        self._last_arrived, self._last_t = cluster.arrived, now
        rate = linear_trend_forecast(list(self._rates))
        rec = self.base.recorder
        if rec.completed:
            isl = max(1, round(rec.prompt_tokens_done / rec.completed))
            osl = max(1, round(rec.output_tokens_done / rec.completed))
        else:
            isl, osl = 1024, 256  # before the first completion: a neutral prior
        colocated = any(i.role is Role.COLOCATED for i in cluster.instances)
        gpus = self.base.gpus
        sizes = dict(zip(gpus, self.base.gpu_sizes))
        caps = {g: self.capacity(cluster, g, isl, osl) for g in gpus}
        weight = {g: sizes[g] * (caps[g][0] + caps[g][1]) for g in gpus}
        total_w = sum(weight.values()) or 1.0
        out = {}
        for g in gpus:
            share = rate * weight[g] / total_w
            out[g] = plan_counts(share, isl, osl, sizes[g], caps[g][0], caps[g][1], self.headroom,
                                 colocated or len(gpus) > 1)
        return out


# ====================================================================== Splitwise borrowing
def borrow_step(cur: int, home: int, max_borrow: int, prefill_over: float, decode_press: float,
                high: float = 0.9, low: float = 0.6) -> int:
    """Next prefill count of one GPU type under Splitwise-style borrowing.

    ``prefill_over`` is the mean predicted prefill wait over its target (1 = at target);
    ``decode_press`` the mean decode slot/KV occupancy (0..1). Lend a decode instance to
    prefill when prefill is over target and decode is below ``low``; lend a prefill instance
    to decode when decode is above ``high`` and prefill below half its target; otherwise, when
    neither phase is stressed, return one step towards ``home``. At most ``max_borrow`` away
    from home.
    """
    if prefill_over > 1.0 and decode_press < low and cur < home + max_borrow:
        return cur + 1
    if decode_press > high and prefill_over < 0.5 and cur > home - max_borrow:
        return cur - 1
    if prefill_over <= 1.0 and decode_press <= high and cur != home:
        return cur + (1 if cur < home else -1)
    return cur


@POLICIES.register("splitwise")
class SplitwisePolicy(AllocatorHeuristic):
    """Splitwise-style mixed-pool borrowing: a home split plus instances lent between phases.

    Splitwise keeps prefill and token pools and a mixed pool whose machines serve whichever
    phase is overloaded, returning when the load falls. Here the home split is the scenario's
    initial roles; per GPU type, at each control step :func:`borrow_step` lends at most one
    instance towards the overloaded phase (up to ``max_borrow`` away from home) or returns one.

    Args:
        env: A disagg-gym env with an ``allocate`` or ``joint`` task.
        seed: Unused (deterministic).
        max_borrow: Most instances lent away from the home split per GPU type.
        ttft_target_s: Prefill-wait target (default: half the workload's base TTFT SLO).
    """

    name = "splitwise"

    def __init__(self, env: gym.Env, seed: int = 0, max_borrow: int = 2, ttft_target_s: float | None = None) -> None:
        super().__init__(env, seed)
        if isinstance(max_borrow, bool) or not isinstance(max_borrow, int) or max_borrow < 0:
            raise UserError(f"splitwise: max_borrow must be an integer >= 0 (got {max_borrow!r})")
        self.max_borrow = max_borrow
        self.ttft_target_s = float(ttft_target_s if ttft_target_s is not None else self.base.scenario.workload.slo_ttft_s / 2)
        if not self.ttft_target_s > 0:
            raise UserError(f"splitwise: ttft_target_s must be > 0 (got {ttft_target_s!r})")

    def start_episode(self, cluster: Cluster) -> None:  # noqa: D102
        super().start_episode(cluster)
        self.home = {g: cluster.role_counts(g)[0] for g in self.base.gpus}

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """One borrowing step per GPU type."""
        now = cluster.engine.now
        out = {}
        for g in self.base.gpus:
            insts = [i for i in cluster.instances if i.gpu == g and i.role is not Role.COLOCATED and i.accepting]
            pre = [i for i in insts if i.role is Role.PREFILL]
            dec = [i for i in insts if i.role is Role.DECODE]
            cur = cluster.role_counts(g)[0]
            if not pre or not dec:
                out[g] = cur
                continue
            p_over = sum(queue_wait_s(i, now) for i in pre) / len(pre) / self.ttft_target_s
            d_press = sum(decode_pressure(i) for i in dec) / len(dec)
            out[g] = borrow_step(cur, self.home[g], self.max_borrow, p_over, d_press)
        return out


BASELINES: tuple[str, ...] = ("spillover", "static_split", "sla_planner", "splitwise")
"""The domain baselines this module registers."""
