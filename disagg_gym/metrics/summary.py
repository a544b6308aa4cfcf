"""KPI summary of a run: latency percentiles, SLO attainment, goodput, utilisation, energy, cost."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.metrics.recorder import Recorder


def _pcts(values: list[float], hist: Any) -> tuple[float, float, float, float]:
    if values:
        arr = np.asarray(values)
        p50, p90, p99 = np.percentile(arr, [50, 90, 99])
        return float(p50), float(p90), float(p99), float(arr.mean())
    if hist.count:
        return hist.quantile(0.5), hist.quantile(0.9), hist.quantile(0.99), hist.mean
    return math.nan, math.nan, math.nan, math.nan


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 9)


def cache_summary(rec: Recorder, cluster: Cluster) -> dict[str, Any]:
    """Prefix-cache KPIs (issue #14), in the summary of runs whose workload carries block hashes.

    ``cache_hit_rate``: prompt tokens of completed requests served from any cache (no compute)
    / their prompt tokens (``prompt_tokens_total``); ``cache_hit_rate_by_tier`` splits the
    numerator by the tier that served them (``hbm``, ``host_dram``, ``ssd``, ``remote``).
    ``prefill_tokens_computed``: tokens every prefill iteration computed (recomputes after
    preemption included). ``cache_bytes_loaded_by_tier`` / ``cache_bytes_offloaded_by_tier``:
    bytes moved up from / down to each lower tier; ``kv_transfer_bytes_saved``: PD-transfer
    bytes not sent because the decode instance held the blocks.
    """
    from disagg_gym.cluster.kv_cache import TIER_NAMES

    total = rec.prompt_tokens_done
    by_tier = rec.cached_tokens_by_tier
    cache = cluster.cache
    lower = TIER_NAMES[1:]
    loaded = cache.bytes_loaded if cache is not None else dict.fromkeys(lower, 0.0)
    offloaded = cache.bytes_offloaded if cache is not None else dict.fromkeys(lower, 0.0)
    return {
        "cache_hit_rate": _clean(sum(by_tier) / total) if total else 0.0,
        "cache_hit_rate_by_tier": {k: _clean(v / total) if total else 0.0 for k, v in zip(TIER_NAMES, by_tier)},
        "prefill_tokens_computed": sum(i.prefill_tokens for i in cluster.instances),
        "prompt_tokens_total": total,
        "cache_bytes_loaded_by_tier": {k: _clean(loaded[k]) for k in lower},
        "cache_bytes_offloaded_by_tier": {k: _clean(offloaded[k]) for k in lower},
        "kv_transfer_bytes_saved": _clean(cache.transfer_bytes_saved if cache is not None else 0.0),
    }


def summarize(
    rec: Recorder, cluster: Cluster, duration_s: float | None = None, horizon_s: float | None = None
) -> dict[str, Any]:
    """Builds the KPI dictionary of a run.

    Args:
        rec: The recorder that observed the run.
        cluster: The cluster (for busy times, power and prices).
        duration_s: Wall span the costs are charged over; defaults to the engine's clock.
        horizon_s: The arrival horizon ``slo_tokens_per_s`` is divided by; defaults to
            ``duration_s``.

    The primary metric shedding cannot game (issue #15) is ``slo_tokens_per_s``: prompt +
    output tokens of the requests that met both SLOs, per second of the horizon. A rejected
    request or one still unfinished when the run stopped (``unfinished``) contributes nothing:
    it counts as a failure, never as "not counted". ``rejection_rate`` is rejected / arrived.

    Energy and cost are the cluster meter's (``disagg_gym.cluster.accounting.Meter``): busy
    prefill/decode time at the cost model's power plus idle power of every provisioned GPU;
    GPU-hours times the per-GPU price (on-demand instances: busy time only). Cost is also given
    per million tokens processed (prompt + output) and per million tokens of requests that
    met both SLOs (``cost_per_1m_good_tokens_usd``).
    """
    dur = float(duration_s if duration_s is not None else cluster.engine.now)
    dur = max(dur, 1e-9)
    finished = rec.completed + rec.rejected
    t50, t90, t99, tmean = _pcts(rec.ttft, rec.h_ttft)
    o50, o90, o99, omean = _pcts(rec.tpot, rec.h_tpot)
    e50, e90, e99, emean = _pcts(rec.e2e, rec.h_e2e)
    # Energy and cost come from the cluster's meter: the same numbers the env's reward uses.
    energy = cluster.energy_j(dur)
    cost = cluster.cost_usd(dur)
    util: dict[str, list[float]] = {}
    busy_s = cluster.meter.busy_s
    for inst in cluster.instances:
        busy = min(busy_s(inst), dur)
        key = inst.role.value if inst.role is not Role.COLOCATED else "colocated"
        util.setdefault(key, []).append(busy / dur)
    tokens = rec.prompt_tokens_done + rec.output_tokens_done
    span = max(float(horizon_s if horizon_s is not None else dur), 1e-9)
    out: dict[str, Any] = {
        "requests_total": rec.arrived,
        "requests_completed": rec.completed,
        "requests_rejected": rec.rejected,
        "requests_in_flight": rec.arrived - finished,
        "unfinished": rec.arrived - finished,
        "rejection_rate": _clean(rec.rejected / rec.arrived) if rec.arrived else None,
        "slo_tokens": rec.good_tokens,
        "slo_tokens_per_s": _clean(rec.good_tokens / span),
        "rejected_by_reason": dict(sorted(rec.rejected_by_reason.items())),
        "duration_s": _clean(dur),
        "ttft_p50_s": _clean(t50), "ttft_p90_s": _clean(t90), "ttft_p99_s": _clean(t99), "ttft_mean_s": _clean(tmean),
        "tpot_p50_s": _clean(o50), "tpot_p90_s": _clean(o90), "tpot_p99_s": _clean(o99), "tpot_mean_s": _clean(omean),
        "e2e_p50_s": _clean(e50), "e2e_p90_s": _clean(e90), "e2e_p99_s": _clean(e99), "e2e_mean_s": _clean(emean),
        "slo_attainment": _clean(rec.met_slo / finished) if finished else None,
        "ttft_slo_attainment": _clean(rec.met_ttft / finished) if finished else None,
        "tpot_slo_attainment": _clean(rec.met_tpot / finished) if finished else None,
        "goodput_rps": _clean(rec.met_slo / dur),
        "throughput_rps": _clean(rec.completed / dur),
        "output_tokens_per_s": _clean(rec.output_tokens_done / dur),
        "total_tokens_per_s": _clean(tokens / dur),
        "utilisation": {k: _clean(sum(v) / len(v)) for k, v in sorted(util.items())},
        "kv_bytes_by_tier": {k: _clean(v) for k, v in sorted(rec.kv_bytes_by_tier.items())},
        "energy_j": _clean(energy),
        "energy_per_request_j": _clean(energy / rec.completed) if rec.completed else None,
        "energy_per_good_request_j": _clean(energy / rec.met_slo) if rec.met_slo else None,
        "cost_usd": _clean(cost),
        "cost_per_1m_tokens_usd": _clean(cost / tokens * 1e6) if tokens else None,
        "cost_per_1m_good_tokens_usd": _clean(cost / rec.good_tokens * 1e6) if rec.good_tokens else None,
        **(cache_summary(rec, cluster) if cluster.carries_hashes else {}),
        "gpus": sum(i.tp for i in cluster.instances),
        "instances": cluster.n,
    }
    return out
