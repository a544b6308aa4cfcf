"""Upper bounds no policy can exceed (issue #15 item 4): ``disagg-gym bounds``. (The cost and
energy metrics, lower-is-better, get lower bounds instead: ``episode_lower_bound``.)

For one workload seed the bound is the optimum of a *fluid* relaxation of serving: choose a
fraction ``x_r`` in [0, 1] of each request to serve within its SLOs, maximising the metric's
value (``slo_tokens_per_s``: prompt + output tokens; ``goodput_rps``: 1 per request) subject to
capacity constraints that every real schedule satisfies:

* **feasibility** -- ``x_r = 0`` when the request cannot meet its SLOs even alone on the fastest
  instance: its prompt's prefill alone exceeds its TTFT SLO, or (two or more output tokens) one
  decode iteration alone at its context exceeds its TPOT SLO;
* **prefill capacity** -- in every time window ``[s, t]``, the prompt tokens of requests that
  arrive at or after ``s`` and must have their first token by ``t`` (arrival + TTFT SLO) fit in
  ``(t - s)`` x the summed peak prefill rate (tokens/s) of the instances that may prefill;
* **decode capacity** -- likewise for output tokens (after the first, which prefill makes)
  with deadline arrival + TTFT SLO + TPOT SLO x (output - 1) and the peak decode rates;
* **shared time** -- in every window, the instance-seconds of prefill and decode at the
  fastest rates fit in ``(t - s)`` x the number of instances (instances that switch roles,
  or colocated ones, share their time between the phases).

Peak rates come from the cost model: the least seconds per token over probe batches (whole
token budgets of short prompts for prefill; full batches at minimal context for decode), with
a 2 % margin for probe error. Queueing, KV memory, transfers and batching limits are ignored,
so the relaxation's optimum is an upper bound on what any policy attains. The LP is bounded
through its Lagrangian dual: *every* non-negative multiplier vector gives a valid upper bound
(weak duality), and a projected subgradient search returns the smallest one found.

The metric's value is divided by the horizon, as ``slo_tokens_per_s`` and the leaderboard's
per-episode scores are. A config's ``upper_bound`` in ``leaderboard/bounds.csv`` is the mean over
the evaluation seeds of the per-seed bounds, so it bounds any policy's mean score over those
seeds.

**Prefix caches.** Where the workload carries prefix-block ids and the cluster's
``prefix_cache`` is enabled, a prompt token served from a cache costs no compute. The bound
then charges each request only its *uncached* prompt tokens ``prompt - cacheable`` in the
feasibility and capacity constraints (its value is unchanged), where ``cacheable`` counts,
generously, every full cache block of the prompt (``workload.prefix.cache_block_hashes``, the
simulator's own keys) whose hash occurs in the prompt of *another* request arriving before this
request's first-token deadline (arrival + TTFT SLO), up to the simulator's cap of ``(P - 1) //
C`` blocks (one token is always computed): a block can only be in any cache once some
request's prefill computed it, and a request that meets its TTFT SLO starts its prefill before
that deadline (a later arrival can be prefilled first while it queues, so "arrived earlier" is
not enough). Capacity, eviction, placement (the block may sit on another instance) and load
times are ignored, so every hit a real schedule gets is counted. Assumes the prefill cost does
not decrease with the cached context (true of the roofline: cached tokens add attention pairs
and KV reads).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from disagg_gym.errors import UserError
from disagg_gym.rng import RngStreams
from disagg_gym.scenario import ScenarioConfig, load_scenario, standard_names
from disagg_gym.workload.prefix import cache_block_hashes_many

METRICS = ("slo_tokens_per_s", "goodput_rps")
"""Metrics bounded from above (higher is better for both)."""
LOWER_METRICS = ("cost_per_1m_good_tokens_usd", "energy_per_good_request_j")
"""Lower-is-better metrics bounded from below (``episode_lower_bound``): the least value any run
reaches. ``leaderboard/bounds.csv`` keeps them in its ``upper_bound`` column, which for these
two holds the bound on the metric itself (the best, i.e. lowest, value possible)."""
METHOD = "fluid_lp_dual"
MARGIN = 0.98
"""Peak rates are divided by this (probe error margin): a looser, still valid, bound."""
EVAL_SEED_OFFSET = 10_000
"""The leaderboard's held-out evaluation seeds start here (same as the agents' evaluation)."""
MAX_EVAL_SEEDS = 10_000
"""How many held-out seeds there are: 10000..19999 (20000+ are the validation seeds)."""


@dataclass(frozen=True)
class Workload:
    """One episode's requests as arrays (what the policy cannot change)."""

    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    slo_ttft_s: np.ndarray
    slo_tpot_s: np.ndarray
    horizon_s: float
    cacheable: np.ndarray | None = None
    """Prompt tokens per request that a prefix cache could serve (``cacheable_tokens``); None: none."""

    @property
    def uncached(self) -> np.ndarray:
        """Prompt tokens each request must compute at least."""
        return self.prompt if self.cacheable is None else self.prompt - self.cacheable


def episode_workload(scen: ScenarioConfig, seed: int) -> Workload:
    """The arrivals a ``Simulation(scen, seed)`` (or an env episode on ``seed``) replays."""
    max_req = scen.env.get("max_episode_requests", None) if isinstance(scen.env, dict) else None
    if max_req is not None:
        scen = replace(scen, max_requests=int(max_req))
    src = scen.workload.build(RngStreams(seed), horizon_s=scen.horizon_s, max_requests=scen.max_requests)
    parts: list[Any] = []
    cache_cfg = scen.cluster.prefix_cache
    hashes: list[tuple[int, ...]] = []
    any_ids = False
    while True:
        ch = src.next_chunk()
        if ch is None or len(ch.arrival_s) == 0:
            break
        parts.append(ch)
        if ch.hash_ids is not None and ch.hash_block_tokens is not None and cache_cfg.enabled:
            any_ids = True
            hashes.extend(cache_block_hashes_many(ch.hash_ids, ch.hash_block_tokens, ch.prompt_tokens,
                                                  cache_cfg.block_tokens))
        else:
            hashes.extend([()] * len(ch.arrival_s))

    def cat(f: str) -> np.ndarray:
        return np.concatenate([getattr(c, f) for c in parts]) if parts else np.zeros(0)

    arr = cat("arrival_s").astype(float)
    # Per second of the arrival window, never longer than the simulator's (Simulation.summary):
    # a finite trace's ends at its last arrival at the earliest, a cap's at its last arrival.
    span = scen.horizon_s
    capped = scen.max_requests is not None and arr.size >= scen.max_requests
    finite = scen.workload.kind == "trace" and not scen.workload.loop
    if (finite or capped) and arr.size:
        last = float(arr.max())
        if last <= 0.0:
            raise UserError(f"{scen.name}: every request arrives at t = 0, so a per-second bound has no "
                            "arrival window to divide by (replay more rows or a longer window)")
        span = min(span, last)
    prompt, ttft = cat("prompt_tokens").astype(float), cat("slo_ttft_s").astype(float)
    cached = cacheable_tokens(arr, ttft, prompt, hashes, cache_cfg.block_tokens) if any_ids else None
    return Workload(arr, prompt, cat("output_tokens").astype(float), ttft, cat("slo_tpot_s").astype(float),
                    float(span), cached)


def cacheable_tokens(
    arrival_s: np.ndarray, slo_ttft_s: np.ndarray, prompt: np.ndarray, hashes: list[tuple[int, ...]],
    block_tokens: int,
) -> np.ndarray:
    """Upper bound on the prompt tokens of each request that a prefix cache can serve.

    Request ``r``'s cache block ``k`` (hash ``hashes[r][k]``) counts when ``k < (P_r - 1) //
    block_tokens`` (the simulator always computes one token) and the same hash occurs in the
    prompt of another request ``q`` with ``arrival_s[q] < arrival_s[r] + slo_ttft_s[r]``: only
    then can ``q``'s prefill have cached it before ``r``'s prefill starts within its TTFT SLO.
    Positions and prefix order are ignored (a superset of the simulator's prefix match).

    Returns:
        Tokens per request (float), ``block_tokens`` x the blocks that count.
    """
    n = len(hashes)
    out = np.zeros(n)
    lens = np.fromiter((len(h) for h in hashes), dtype=np.int64, count=n)
    if n < 2 or lens.sum() == 0:
        return out
    owner = np.repeat(np.arange(n), lens)
    pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    h = np.fromiter((x for hs in hashes for x in hs), dtype=np.uint64, count=int(lens.sum()))
    arr = np.asarray(arrival_s, dtype=float)[owner]
    order = np.lexsort((arr, h))  # by hash, then arrival
    h_s, own_s, arr_s = h[order], owner[order], arr[order]
    start = np.r_[True, h_s[1:] != h_s[:-1]]
    grp = np.cumsum(start) - 1
    first = np.flatnonzero(start)  # index of each hash's earliest occurrence
    size = np.diff(np.r_[first, len(h_s)])
    first_owner, first_arr = own_s[first], arr_s[first]
    # the earliest occurrence in a *different* request: the next one when the first is r's own
    # (a hash twice in one prompt would count its own request: more hits, still a bound)
    second_arr = np.where(size > 1, arr_s[np.minimum(first + 1, len(h_s) - 1)], np.inf)
    other_arr = np.where(first_owner[grp] != own_s, first_arr[grp], second_arr[grp])
    deadline = (np.asarray(arrival_s, dtype=float) + np.asarray(slo_ttft_s, dtype=float))[own_s]
    limit = ((np.asarray(prompt, dtype=np.int64) - 1) // block_tokens)[own_s]
    hit = (other_arr < deadline) & (pos[order] < limit)
    np.add.at(out, own_s[hit], float(block_tokens))
    return out


@dataclass(frozen=True)
class Capacity:
    """Per-instance peak rates and which phases each instance may serve."""

    prefill_s_per_token: np.ndarray  # per instance
    decode_s_per_token: np.ndarray
    can_prefill: np.ndarray  # bool per instance
    can_decode: np.ndarray
    lone_prefill: Any  # (prompt) -> fastest lone prefill seconds over prefill-capable instances
    lone_decode: Any  # (context) -> fastest lone decode iteration over decode-capable instances
    # Per instance, for the cost and energy lower bounds:
    prefill_extra_w: np.ndarray  # power while prefilling above what is always drawn
    decode_extra_w: np.ndarray  # the same while decoding
    always_w: float  # power drawn by the provisioned GPUs whatever they do (idle power)
    price_per_s: np.ndarray  # USD per second of the instance
    on_demand: np.ndarray  # bool: billed for busy time only
    colocated: bool  # some instance starts colocated (mixed prefill+decode iterations)


def cluster_capacity(scen: ScenarioConfig) -> Capacity:
    """Peak prefill/decode seconds per token of each instance, from the cost model."""
    from disagg_gym.hardware import build_cost, get_gpu, load_model

    model = load_model(scen.cluster.model)
    flexible = scen.task in ("allocate", "joint") or scen.allocator.name != "none"
    pt, dt, cp, cd, costs_p, costs_d = [], [], [], [], [], []
    pw_p, pw_d, price, od = [], [], [], []
    always_w = 0.0
    idle = scen.cluster.idle_power
    cache: dict[tuple[Any, ...], tuple[float, float]] = {}
    for g in scen.cluster.groups:
        cost = build_cost(get_gpu(g.gpu), model, g.tp, g.cost_model)
        budget = max(g.prefill_token_budget, g.prefill_chunk_tokens or 0, 1)
        key = (g.gpu, g.tp, g.cost_model, budget, g.max_batch)
        if key not in cache:
            best_p = math.inf
            for length in (16, 32, 64, 128, 256, 512, 1024):
                for total in (budget, 4 * budget, 64 * budget):
                    k = max(1, total // length)
                    best_p = min(best_p, cost.prefill_s([length] * k) / (k * length))
            best_d = min(cost.decode_s([1] * b) / b for b in range(1, g.max_batch + 1))
            cache[key] = (best_p * MARGIN, best_d * MARGIN)
        sp, sd = cache[key]
        gpu_price = g.price_usd_per_gpu_hour if g.price_usd_per_gpu_hour is not None else get_gpu(g.gpu).price_usd_per_hour
        for _ in range(g.count):
            # The meter (cluster.accounting.Meter) charges idle power of every provisioned GPU
            # all along when idle_power is on, and the phase's power above it while busy.
            base_w = cost.idle_power_w if idle else 0.0
            always_w += base_w
            pw_p.append(cost.prefill_power_w - base_w)
            pw_d.append(cost.decode_power_w - base_w)
            price.append(gpu_price * g.tp / 3600.0)
            od.append(g.billing == "on_demand")
            pt.append(sp)
            dt.append(sd)
            cp.append(g.role in ("prefill", "colocated") or flexible)
            cd.append(g.role in ("decode", "colocated") or flexible)
        if g.role in ("prefill", "colocated") or flexible:
            costs_p.append(cost)
        if g.role in ("decode", "colocated") or flexible:
            costs_d.append(cost)

    def lone_prefill(prompts: np.ndarray) -> np.ndarray:
        out = np.full(prompts.shape, math.inf)
        memo: dict[int, float] = {}
        for j, p in enumerate(prompts.astype(int).tolist()):
            v = memo.get(p)
            if v is None:
                v = memo[p] = min(c.prefill_s([p]) for c in costs_p)
            out[j] = v
        return out * MARGIN

    def lone_decode(ctx: np.ndarray) -> np.ndarray:
        out = np.full(ctx.shape, math.inf)
        memo: dict[int, float] = {}
        for j, c_ in enumerate(ctx.astype(int).tolist()):
            v = memo.get(c_)
            if v is None:
                v = memo[c_] = min(c.decode_s([c_]) for c in costs_d)
            out[j] = v
        return out * MARGIN

    return Capacity(
        np.asarray(pt), np.asarray(dt), np.asarray(cp, bool), np.asarray(cd, bool), lone_prefill, lone_decode,
        prefill_extra_w=np.asarray(pw_p), decode_extra_w=np.asarray(pw_d), always_w=always_w,
        price_per_s=np.asarray(price), on_demand=np.asarray(od, bool),
        colocated=any(g.role == "colocated" for g in scen.cluster.groups),
    )


def feasible(wl: Workload, cap: Capacity, horizon_policy: str = "drain") -> np.ndarray:
    """Requests that could meet both SLOs alone on an idle cluster.

    With ``horizon_policy="fail"`` a request must also be able to finish by the horizon (its
    lone prefill plus ``output - 1`` lone decode iterations at its first context), since a
    request unfinished when the episode stops is a failure.
    """
    pre = cap.lone_prefill(wl.uncached)
    ok = pre <= wl.slo_ttft_s
    multi = wl.output > 1
    tpot_ok = np.ones_like(ok)
    dec = np.zeros_like(pre)
    if multi.any():
        it = cap.lone_decode(wl.prompt[multi] + 1)
        tpot_ok[multi] = it <= wl.slo_tpot_s[multi]
        dec[multi] = it * (wl.output[multi] - 1)
    out = ok & tpot_ok
    if horizon_policy == "fail":
        out &= wl.arrival_s + pre + dec <= wl.horizon_s
    return out


def _windows(t_end: float, n: int = 12) -> list[tuple[float, float]]:
    pts = np.linspace(0.0, t_end, n + 1)
    return [(float(pts[i]), float(pts[j])) for i in range(n) for j in range(i + 1, n + 1)]


def constraint_matrix(
    wl: Workload, cap: Capacity, ok: np.ndarray, horizon_policy: str = "drain"
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, c)``: rows ``A @ x <= c`` of the fluid relaxation (see the module docstring).

    Under ``horizon_policy="fail"`` every deadline is also capped at the horizon.
    """
    a, p, o = wl.arrival_s, wl.uncached, np.maximum(wl.output - 1, 0)
    ttft_dl = a + wl.slo_ttft_s
    dec_dl = ttft_dl + wl.slo_tpot_s * o
    if horizon_policy == "fail":
        ttft_dl = np.minimum(ttft_dl, wl.horizon_s)
        dec_dl = np.minimum(dec_dl, wl.horizon_s)
    rate_p = float(np.sum(1.0 / cap.prefill_s_per_token[cap.can_prefill])) if cap.can_prefill.any() else 0.0
    rate_d = float(np.sum(1.0 / cap.decode_s_per_token[cap.can_decode])) if cap.can_decode.any() else 0.0
    cp = float(cap.prefill_s_per_token[cap.can_prefill].min()) if cap.can_prefill.any() else math.inf
    cd = float(cap.decode_s_per_token[cap.can_decode].min()) if cap.can_decode.any() else math.inf
    n_inst = len(cap.can_prefill)
    t_end = float(max(dec_dl[ok].max(), ttft_dl[ok].max())) if ok.any() else 1.0
    rows, caps = [], []
    for s, t in _windows(t_end):
        inside_p = (a >= s) & (ttft_dl <= t) & ok
        inside_d = (a >= s) & (dec_dl <= t) & ok
        rows.append(np.where(inside_p, p, 0.0))
        caps.append((t - s) * rate_p)
        rows.append(np.where(inside_d, o, 0.0))
        caps.append((t - s) * rate_d)
        rows.append(np.where(inside_p, p * cp, 0.0) + np.where(inside_d, o * cd, 0.0))
        caps.append((t - s) * n_inst)
    # Whole-episode rows: everything served must be done by its own deadline.
    rows.append(np.where(ok, p, 0.0))
    caps.append(float(ttft_dl[ok].max() if ok.any() else 0.0) * rate_p)
    rows.append(np.where(ok, o, 0.0))
    caps.append(t_end * rate_d)
    return np.asarray(rows), np.asarray(caps)


def lp_dual_bound(values: np.ndarray, A: np.ndarray, c: np.ndarray, iters: int = 1000) -> float:
    """Upper bound on ``max v.x s.t. A x <= c, 0 <= x <= 1`` by the Lagrangian dual.

    For any ``lam >= 0``: ``v.x <= lam.c + sum_r max(0, v_r - (lam A)_r)`` for every feasible
    ``x`` (weak duality). Rows are normalised by ``c`` and values by their sum; a projected
    subgradient search with diminishing steps keeps the least value seen. Rows with ``c = 0``
    force their requests out (``x_r = 0`` where the row is positive).
    """
    v = values.astype(float).copy()
    zero = c <= 0
    if zero.any():
        v[(A[zero] > 0).any(axis=0)] = 0.0
        A, c = A[~zero], c[~zero]
    total = v.sum()
    if total <= 0:
        return 0.0
    if len(c) == 0 or np.all(np.einsum("ij,j->i", A, (v > 0).astype(float)) <= c * (1 + 1e-12)):
        return float(total)  # serving every request with value fits: the LP optimum is the total
    # float32 rows in units of their capacity (the value of g is recomputed in float64 below)
    An = np.ascontiguousarray(A / c[:, None], dtype=np.float32)
    AnT = np.ascontiguousarray(An.T)
    vn = v / total
    lam = np.zeros(len(c))
    best = 1.0  # lam = 0: every request's value
    step0 = 0.5
    for k in range(1, iters + 1):
        # einsum (no BLAS): BLAS threads oversubscribe small shared machines (10x slower here)
        red = vn - np.einsum("ij,j->i", AnT, lam.astype(np.float32)).astype(np.float64)
        act = red > 0
        g = float(lam.sum() + red[act].sum())
        if g < best:
            best = min(best, _exact_dual(lam, vn, A, c))  # float64: the bound reported is exact
        grad = 1.0 - np.einsum("ij,j->i", An, act.astype(np.float32)).astype(np.float64)
        norm = float(np.linalg.norm(grad))
        if norm == 0:
            break
        lam = np.maximum(0.0, lam - step0 / math.sqrt(k) * grad / norm)
    return float(best * total)


def _exact_dual(lam: np.ndarray, vn: np.ndarray, A: np.ndarray, c: np.ndarray) -> float:
    """The dual function at ``lam`` in float64 (rows normalised by ``c``)."""
    red = vn - np.einsum("i,ij->j", lam / c, A)
    return float(lam.sum() + red[red > 0].sum())


def episode_bound(
    scen: ScenarioConfig, seed: int, metric: str = "slo_tokens_per_s", cap: Capacity | None = None,
    horizon_policy: str = "drain",
) -> float:
    """Upper bound on ``metric`` for one workload seed (see the module docstring).

    ``horizon_policy="drain"`` bounds drained runs and therefore also runs that stop at the
    horizon; ``"fail"`` is a tighter bound valid only for runs that stop at the horizon (env
    episodes under ``horizon_policy: auto``): requests that cannot finish by then count zero.
    """
    if metric in LOWER_METRICS:
        return episode_lower_bound(scen, seed, metric, cap, horizon_policy)
    if metric not in METRICS:
        raise UserError(f"no bound for metric {metric!r}; expected one of: {', '.join(METRICS + LOWER_METRICS)}")
    wl = episode_workload(scen, seed)
    if wl.arrival_s.size == 0:
        return 0.0
    if horizon_policy not in ("drain", "fail"):
        raise UserError(f"horizon_policy must be drain or fail (got {horizon_policy!r})")
    cap = cap or cluster_capacity(scen)
    ok = feasible(wl, cap, horizon_policy)
    lp = _FluidLP(wl, cap, ok, horizon_policy)
    return (lp.tokens() if metric == "slo_tokens_per_s" else lp.requests()) / wl.horizon_s


class _FluidLP:
    """One episode's fluid relaxation (constraints built once): bounds on the SLO-meeting tokens
    and requests of any run.
    """

    def __init__(self, wl: Workload, cap: Capacity, ok: np.ndarray, horizon_policy: str) -> None:
        self.wl, self.ok = wl, ok
        self.A, self.c = constraint_matrix(wl, cap, ok, horizon_policy)

    def _value(self, per_request: np.ndarray) -> float:
        return lp_dual_bound(np.where(self.ok, per_request, 0.0), self.A, self.c)

    def tokens(self) -> float:
        """Prompt + output tokens of the requests that can meet both SLOs, at most."""
        return self._value(self.wl.prompt + self.wl.output)

    def requests(self) -> float:
        """Requests that can meet both SLOs, at most."""
        return self._value(np.ones_like(self.wl.prompt))


def episode_lower_bound(
    scen: ScenarioConfig, seed: int, metric: str, cap: Capacity | None = None, horizon_policy: str = "drain",
) -> float:
    """Lower bound on a lower-is-better metric (``LOWER_METRICS``) for one workload seed: no
    run on this seed reaches a smaller value (``math.inf`` when no request can meet its SLOs).

    Both read the meter (``cluster.accounting.Meter``) over the run's charged span ``D``, which
    is at least ``D_min = min(horizon, last arrival)`` for every run (``Simulation.summary``).

    * ``energy_per_good_request_j`` = energy / G (G requests met both SLOs). Energy is at least
      the always-drawn power (idle power of every provisioned GPU, if counted) x ``D_min`` plus,
      for each good request, its uncached prompt tokens x the least prefill energy per token
      (seconds per token at the peak rate x power above idle) and its ``output - 1`` decode
      tokens x the least decode energy per token, over the instances that may serve each
      phase. With ``e_1 <= e_2 <= ...`` those per-request minima of the feasible requests and
      ``G <= N`` (N: the fluid bound on good requests), the bound is
      ``min over k <= N of (always_w x D_min + e_1 + ... + e_k) / k``. Not defined for colocated
      instances (a mixed iteration may cost less than its parts).
    * ``cost_per_1m_good_tokens_usd`` = cost / T x 1e6 (T: prompt + output tokens of the good
      requests). Cost is at least the reserved instances' price x ``D_min``; with
      ``horizon_policy="fail"`` (runs stop at the horizon, as env episodes do) tokens beyond
      what the reserved instances can serve by the horizon (at their peak rate, plus each good
      request's first token, which its prefill makes) are served by on-demand instances, each
      at least the cheapest on-demand price x seconds per token. Over ``T <= T_max`` (the fluid
      bound on good tokens) the ratio is smallest at ``T_max`` or where the reserved capacity
      runs out, so both are checked.
    """
    if metric not in LOWER_METRICS:
        raise UserError(f"no lower bound for metric {metric!r}; expected one of: {', '.join(LOWER_METRICS)}")
    if horizon_policy not in ("drain", "fail"):
        raise UserError(f"horizon_policy must be drain or fail (got {horizon_policy!r})")
    cap = cap or cluster_capacity(scen)
    wl = episode_workload(scen, seed)
    if wl.arrival_s.size == 0:
        return math.inf
    ok = feasible(wl, cap, horizon_policy)
    if not ok.any():
        return math.inf
    d_min = min(float(scen.horizon_s), float(wl.arrival_s.max()))
    decode = np.maximum(wl.output - 1, 0)
    if metric == "energy_per_good_request_j" and cap.colocated:
        raise UserError(f"{scen.name}: no energy bound for colocated instances (mixed iterations)")
    lp = _FluidLP(wl, cap, ok, horizon_policy)
    if metric == "energy_per_good_request_j":
        e_pf = float(np.min((cap.prefill_s_per_token * cap.prefill_extra_w)[cap.can_prefill]))
        e_dec = float(np.min((cap.decode_s_per_token * cap.decode_extra_w)[cap.can_decode]))
        n_max = math.floor(lp.requests() + 1e-9)
        if n_max < 1:
            return math.inf
        e = np.sort((wl.uncached * e_pf + decode * e_dec)[ok])[:n_max]
        k = np.arange(1, e.size + 1)
        return float(np.min((cap.always_w * d_min + np.cumsum(e)) / k))
    t_max = lp.tokens()
    if t_max <= 0:
        return math.inf
    reserved = ~cap.on_demand
    fixed = float(cap.price_per_s[reserved].sum()) * d_min
    m = 0.0
    cq = math.inf
    if horizon_policy == "fail" and cap.on_demand.any():
        fastest = np.where(cap.can_prefill, cap.prefill_s_per_token, math.inf)
        fastest = np.minimum(fastest, np.where(cap.can_decode, cap.decode_s_per_token, math.inf))
        m = float(np.min((cap.price_per_s * fastest)[cap.on_demand]))
        # Good tokens the reserved instances can account for: their compute by the horizon, each
        # good request's first token (made by its prefill) and every cacheable prompt token.
        cq = float(np.sum(scen.horizon_s / fastest[reserved])) + lp.requests() + float(np.sum(wl.prompt - wl.uncached))

    def ratio(t: float) -> float:
        return (fixed + m * max(0.0, t - cq)) / t

    return 1e6 * min(ratio(t_max), ratio(min(cq, t_max)))


def bound_horizon(metric: str, horizon_policy: str) -> str:
    """The horizon policy a bound of ``metric`` is computed under: the cost bound uses ``fail``
    whatever is asked (the leaderboard's env episodes stop at the horizon; under ``drain`` it
    would drop its on-demand term and only get looser).
    """
    return "fail" if metric == "cost_per_1m_good_tokens_usd" else horizon_policy


def bound_method(metric: str, horizon_policy: str, seeds: list[int]) -> str:
    """The ``method`` column of ``leaderboard/bounds.csv`` for ``metric``."""
    over = f"mean over seeds {seeds[0]}-{seeds[-1]}"
    if metric == "energy_per_good_request_j":
        return f"lower bound: idle_power_plus_least_busy_energy(goodput {METHOD}, horizon {horizon_policy}; {over})"
    if metric == "cost_per_1m_good_tokens_usd":
        return f"lower bound: reserved_cost_plus_on_demand_overflow(tokens {METHOD}, horizon fail; {over})"
    return f"{METHOD}(horizon {horizon_policy}; {over})"


def round_bound(b: float, metric: str) -> float:
    """``b`` to 6 decimals, rounded away from the feasible side so the written value is still a
    bound (down for the lower bounds of ``LOWER_METRICS``, up otherwise).
    """
    if not math.isfinite(b):
        return b
    return math.floor(b * 1e6) / 1e6 if metric in LOWER_METRICS else math.ceil(b * 1e6) / 1e6


def config_bound(
    name: str, metric: str, seeds: list[int], overrides: dict[str, Any] | None = None, horizon_policy: str = "drain"
) -> float:
    """Mean over ``seeds`` of the per-seed bounds of config ``name``."""
    scen = load_scenario(name, overrides)
    cap = cluster_capacity(scen)
    return float(np.mean([episode_bound(scen, s, metric, cap, horizon_policy) for s in seeds]))


# ---------------------------------------------------------------------- CLI
def add_bounds_args(sp: argparse.ArgumentParser) -> None:
    """Arguments of ``disagg-gym bounds``."""
    from disagg_gym.argtypes import positive_int

    sp.add_argument("--config", action="append", metavar="NAME", help="config (repeatable; default: every standard config)")
    sp.add_argument("--seeds", type=positive_int, default=10,
                    help="evaluation seeds 10000..10000+N-1 the bound is averaged over (default 10)")
    sp.add_argument("--metric", action="append", choices=METRICS + LOWER_METRICS,
                    help="metric (repeatable; default: slo_tokens_per_s and goodput_rps, plus the config's "
                         "primary metric when it is cost or energy, bounded from below)")
    sp.add_argument("--out", type=Path, default=Path("leaderboard/bounds.csv"), help="CSV to write (default leaderboard/bounds.csv)")
    sp.add_argument("--horizon-policy", choices=("drain", "fail"), default="drain",
                    help="drain (default): valid for every run; fail: tighter, only for runs that stop at the horizon")


BOUNDS_HEADER = ["config", "metric", "upper_bound", "method"]


def _read_bounds_rows(path: Path) -> list[list[str]]:
    """The data rows of an existing bounds CSV (``[]`` when there is none); a file that is not
    one is a ``UserError`` naming it (it would otherwise be overwritten).
    """
    import csv

    if not path.exists():
        return []
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"--out {path}: cannot read it as a bounds CSV ({exc})") from None
    if not rows:
        return []
    if rows[0] != BOUNDS_HEADER or any(len(r) != len(BOUNDS_HEADER) for r in rows[1:]):
        raise UserError(f"--out {path}: not a bounds CSV (expected the header {','.join(BOUNDS_HEADER)} "
                        f"and 4 columns per row); name another file")
    return rows[1:]


def cmd_bounds(args: argparse.Namespace) -> int:
    """Computes ``config,metric,upper_bound,method`` rows for each config and metric and merges
    them into ``--out``: rows of the same (config, metric) are replaced in place, new ones
    appended, every other row kept (bounding one config leaves the others' rows alone).
    """
    import csv
    import io

    from disagg_gym.io import atomic_write_text, check_output_file, locked

    check_output_file(args.out, "--out")
    _read_bounds_rows(args.out)  # a file that is not a bounds CSV fails now, not after the work
    names = args.config or standard_names()
    if args.seeds > MAX_EVAL_SEEDS:  # before a list of them, or runs on validation seeds
        raise UserError(
            f"argument --seeds: at most {MAX_EVAL_SEEDS}, the held-out seeds {EVAL_SEED_OFFSET}.."
            f"{EVAL_SEED_OFFSET + MAX_EVAL_SEEDS - 1} (20000+ are the validation seeds) (got {args.seeds})"
        )
    seeds = [EVAL_SEED_OFFSET + k for k in range(args.seeds)]
    scens = {name: load_scenario(name) for name in names}  # every name checked before any work

    def merge(new: dict[tuple[str, str], list[str]]) -> None:
        """Merges ``new`` into ``--out`` (another bounds run may have written meanwhile)."""
        with locked(args.out):
            old = _read_bounds_rows(args.out)
            pending = dict(new)
            rows = [pending.pop((r[0], r[1]), r) for r in old]  # same (config, metric): replaced in place
            rows += pending.values()
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(BOUNDS_HEADER)
            w.writerows(rows)
            atomic_write_text(args.out, buf.getvalue())

    computed = 0
    for name, scen in scens.items():
        primary = scen.primary_metric
        metrics = args.metric or list(METRICS) + ([primary] if primary in LOWER_METRICS else [])
        mine: dict[tuple[str, str], list[str]] = {}
        if not args.config and scen.workload.kind == "trace" and scen.workload.trace_path is not None \
                and not Path(scen.workload.trace_path).is_file():
            # every config by default: one whose trace is not here (a core install away from
            # ../shared) is skipped, not the end of the run; named explicitly, it is an error
            print(f"disagg-gym: warning: {name} skipped: its trace {scen.workload.trace_path} is not here "
                  "(run from a checkout beside ../shared)",
                  file=sys.stderr)
            continue
        for m in metrics:
            b = config_bound(name, m, seeds, horizon_policy=bound_horizon(m, args.horizon_policy))
            mine[(scen.name, m)] = [scen.name, m, repr(round_bound(b, m)), bound_method(m, args.horizon_policy, seeds)]
            print(f"{name:<22s} {m:<28s} {b:.6g}", flush=True)
        # written config by config: an interrupted run keeps every config it finished
        merge(mine)
        computed += len(mine)
    kept = len(_read_bounds_rows(args.out)) - computed
    print(f"wrote {args.out}: {computed} row(s) computed, {kept} other row(s) kept")
    return 0
