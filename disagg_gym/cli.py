"""The ``disagg-gym`` command line: simulate, predict, list, bench, train, evaluate, benchmark,
tune-baselines, bounds, validate.

User errors (bad configs, traces, flags, unwritable output paths) print one line
``disagg-gym: error: ...`` and exit 2: ``disagg_gym.errors.UserError`` (``ConfigError`` and
``TraceError`` are kinds of it) and ``OSError``. Any other exception, an internal
``ValueError`` included, keeps its traceback: a traceback means a bug in disagg-gym.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from disagg_gym.argtypes import nonneg_int, positive_float, positive_int
from disagg_gym import __version__, plots
from disagg_gym.bench import add_bench_args
from disagg_gym.config import parse_override, read_text_file
from disagg_gym.env.config import check_env_sections
from disagg_gym.extras import import_user_modules, require
from disagg_gym.hardware import build_cost, get_gpu, load_model
from disagg_gym.interconnect.links import get_link, link_for_gpu
from disagg_gym.io import atomic_write_text, check_output_dir, check_output_file, describe_os_error
from disagg_gym.metrics.chrome_trace import ChromeTrace
from disagg_gym.metrics.recorder import RECORD_FIELDS
from disagg_gym.metrics.timeline import TimelineSampler
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation
from disagg_gym.errors import UserError

__all__ = ["UserError", "build_parser", "main", "nonneg_int", "positive_float", "positive_int"]  # UserError re-exported (it used to live here)

CHROME_TRACE_MAX_EVENTS = 200_000
"""Events a ``--chrome-trace`` keeps by default (the first ones; the rest are counted as dropped)."""
PREDICT_MAX_BATCH = 65_536
"""Largest ``predict`` batch: far above any serving batch, small enough to answer at once."""


class _Parser(argparse.ArgumentParser):
    """Bad flags get one line naming the bad value, like every other error (no usage block:
    ``--help`` shows it).
    """

    def error(self, message: str) -> None:  # noqa: D102
        print(f"disagg-gym: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _overrides(items: Sequence[str] | None) -> dict[str, Any]:
    return dict(parse_override(s) for s in items or [])


def config_name(text: str) -> str:
    """A ``--config`` value -> a config name or YAML path: an env id names its standard config.

    ``disagg/SmallRoute-v3`` and ``disagg_gym:disagg/SmallRoute-v3`` -> ``small-route``; names,
    paths and unknown values pass through (``load_scenario`` reports those). An old version of
    a standard id is a ``UserError`` naming the current id.
    """
    p = Path(text)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return text
    from disagg_gym.env.registration import standard_env_for, variant_envs

    e = standard_env_for(text)
    if e:
        return e["config"]
    bare = text.split(":", 1)[1] if ":" in text else text
    for v in variant_envs():
        if v["id"] == bare:  # a variant adds env-side settings (warm start, decision interval)
            raise UserError(
                f"{text!r} is the {v['variant']!r} variant of config {v['config']!r}: its settings are for "
                f"the env (gym.make / disagg-gym evaluate --env {v['id']}); simulate runs the config itself: "
                f"--config {v['config']} (with --set for any of the variant's keys, docs/envs.md)"
            )
    return text


def canonical_env_ids(items: Sequence[str]) -> list[str]:
    """``--configs`` values -> current env ids: config names and prefixed ids are mapped.

    Result-file paths (``validate --configs A B results.csv``) and unknown values pass through
    for the command to report; an old version of a standard id is a ``UserError`` naming the
    current id.
    """
    from disagg_gym.env.registration import standard_env_for

    out = []
    for item in items:
        e = None if item.endswith(".csv") or Path(item).is_file() else standard_env_for(item)
        out.append(e["id"] if e else item)
    return out


def workload_label(w: Any) -> str:
    """One phrase naming a workload config: ``replaying X.csv x4``, ``poisson 53 req/s, azure_conv lengths``,
    ``poisson 88 req/s, azure_code then azure_conv from 300 s lengths``.
    """
    if w.kind == "trace":
        text = f"replaying {Path(str(w.trace_path)).name}"
        if w.rate_scale != 1:
            text += f" x{w.rate_scale:g}"
        return text + (" (looped)" if w.loop else "")
    if w.kind == "multi_turn":  # no conversation is in progress at t = 0: the rate ramps up
        return f"{w.kind} prefix workload, {w.rate_per_s:g} req/s in steady state"
    if w.kind in ("tenants", "rag"):
        return f"{w.kind} prefix workload, {w.rate_per_s:g} req/s on average"
    def spec(name: str) -> str:
        return f"{w.prompt_tokens}/{w.output_tokens}-token" if name == "fixed" else name

    lengths = spec(w.lengths)
    if w.lengths_after is not None:
        lengths += f" then {spec(w.lengths_after)} from {w.lengths_switch_at_s:g} s"
    rate = f"{w.rate_per_s:g} req/s"
    if w.kind == "gamma":
        rate += f" (CV {w.cv:g})"
    if w.kind == "time_varying":
        rate = f"{w.rate_profile} around {rate}"
    return f"{w.kind} {rate}, {lengths} lengths"


def slo_targets(w: Any) -> dict[str, float]:
    """The workload's SLO targets, seconds: ``ttft_s``, ``ttft_per_1k_prompt_s``, ``tpot_s``."""
    return {"ttft_s": w.slo_ttft_s, "ttft_per_1k_prompt_s": w.slo_ttft_per_1k_prompt_s, "tpot_s": w.slo_tpot_s}


def fmt_slos(slo: dict[str, float]) -> str:
    """``TTFT <= 1 s, TPOT <= 100 ms per output token`` (TTFT grows with the prompt if so set)."""
    ttft = f"TTFT <= {slo['ttft_s']:g} s"
    if slo.get("ttft_per_1k_prompt_s"):
        ttft += f" + {slo['ttft_per_1k_prompt_s']:g} s per 1k prompt tokens"
    return f"{ttft}, TPOT <= {slo['tpot_s'] * 1e3:g} ms per output token (a request meets its SLO if both hold)"


UTILISATION_NOTE = (
    "utilisation = share of the run each instance spent computing prefill or decode batches, "
    "averaged over the instances of a role"
)


def fmt_summary(s: dict[str, Any]) -> str:
    """Human-readable summary table of a simulation's KPIs."""

    def f(key: str, scale: float = 1.0, unit: str = "", nd: int = 3) -> str:
        v = s.get(key)
        return "n/a" if v is None else f"{v * scale:.{nd}f}{unit}"

    title = s.get("scenario")
    if s.get("workload"):
        title = f"{title}, {s['workload']}"
    lines = [
        f"{title}  (seed {s.get('seed')}, router {s.get('policy', '')})",
        *([f"SLOs          {fmt_slos(s['slo'])}"] if s.get("slo") else []),
        f"requests      total {s['requests_total']}  completed {s['requests_completed']}  "
        f"rejected {s['requests_rejected']}" + (f" {s['rejected_by_reason']}" if s["rejected_by_reason"] else ""),
        f"TTFT          p50 {f('ttft_p50_s', 1e3, ' ms', 1)}  p90 {f('ttft_p90_s', 1e3, ' ms', 1)}  p99 {f('ttft_p99_s', 1e3, ' ms', 1)}",
        f"TPOT          p50 {f('tpot_p50_s', 1e3, ' ms', 2)}  p90 {f('tpot_p90_s', 1e3, ' ms', 2)}  p99 {f('tpot_p99_s', 1e3, ' ms', 2)}",
        f"end-to-end    p50 {f('e2e_p50_s', 1, ' s', 2)}  p99 {f('e2e_p99_s', 1, ' s', 2)}",
        f"SLO           attainment {f('slo_attainment', 100, ' %', 1)}  (TTFT {f('ttft_slo_attainment', 100, ' %', 1)}, "
        f"TPOT {f('tpot_slo_attainment', 100, ' %', 1)})  goodput {f('goodput_rps', 1, ' req/s', 2)}"
        + (f" (over the {s['duration_s']:.1f} s run)" if s.get("duration_s") is not None else ""),
        f"SLO tokens    {f('slo_tokens_per_s', 1, ' tok/s', 0)}  (per second of the arrival horizon: prompt + output of requests meeting both SLOs; "
        f"rejection rate {f('rejection_rate', 100, ' %', 1)}, unfinished {s.get('unfinished', 0)}, "
        f"horizon {s.get('horizon_policy', 'drain')})",
        f"throughput    {f('output_tokens_per_s', 1, ' out tok/s', 0)}  utilisation "
        + ", ".join(f"{role} {100 * u:.1f} %" for role, u in (s.get("utilisation") or {}).items() if u is not None)
        + " (busy share of the run, mean per role)",
        f"energy        {f('energy_per_request_j', 1, ' J/request', 1)}   cost {f('cost_per_1m_tokens_usd', 1, ' $/1M tokens', 3)}",
        f"KV transfers  {', '.join(f'{k}: {v / 1e9:.2f} GB' for k, v in s['kv_bytes_by_tier'].items()) or 'none'}"
        " (prefill -> decode, by interconnect tier)",
        *_cache_lines(s),
        f"simulated     {s['simulated_s']:.1f} s in {s.get('wall_s', 0):.2f} s wall "
        f"({s['requests_total'] / max(s.get('wall_s', 1e-9), 1e-9):,.0f} req/s, {s['events']} events)",
    ]
    return "\n".join(lines)


def _cache_lines(s: dict[str, Any]) -> list[str]:
    """The prefix-cache lines of the summary table (runs whose requests carry block hashes)."""
    if "cache_hit_rate" not in s:
        return []
    by_tier = ", ".join(f"{k} {100 * v:.1f} %" for k, v in s["cache_hit_rate_by_tier"].items())

    def gb(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in d.items() if v) or "none"

    return [
        f"prefix cache  hit rate {100 * s['cache_hit_rate']:.1f} % of prompt tokens ({by_tier}); computed "
        f"{s['prefill_tokens_computed']:,} of {s['prompt_tokens_total']:,} prompt tokens",
        f"cache bytes   loaded {gb(s['cache_bytes_loaded_by_tier'])}; offloaded {gb(s['cache_bytes_offloaded_by_tier'])}; "
        f"not sent prefill -> decode {s['kv_transfer_bytes_saved'] / 1e9:.2f} GB",
    ]


# ====================================================================== simulate
def _refuse_shared_outputs(args: argparse.Namespace) -> None:
    """Two outputs of one run at the same path: the later one overwrote the earlier, unseen
    (``--records x --chrome-trace x``; ``--chrome-trace DIR/timeline.png --plots DIR``).
    """
    outputs: list[tuple[str, str]] = []
    if args.records:
        outputs.append(("--records", str(args.records)))
    if args.chrome_trace is not None:
        outputs.append(("--chrome-trace", str(args.chrome_trace)))
    if args.plots:
        outputs += [(f"--plots ({name})", str(Path(args.plots) / name)) for name in ("latency_cdf.png", "timeline.png")]
    seen: dict[str, str] = {}
    for flag, path in outputs:
        key = os.path.realpath(path)
        if key in seen:
            raise UserError(f"{flag} {path!r} is the same file as {seen[key]}: pick another path")
        seen[key] = flag


def cmd_simulate(args: argparse.Namespace) -> int:
    """Runs one simulation and prints its summary."""
    if args.policy is not None and not args.policy.strip():
        raise UserError("argument --policy: expected a router name (got '')")
    import_user_modules(args.imports)  # a router (admission controller, allocator) of the user's own
    args.config = config_name(args.config)
    if args.records:
        check_output_file(args.records, "--records")
    if args.plots:
        check_output_dir(args.plots, "--plots")
        require("plots")  # before the run, not after it
    _refuse_shared_outputs(args)
    overrides = _overrides(args.set)
    if args.horizon is not None and "horizon_s" in overrides and overrides["horizon_s"] != args.horizon:
        # the flag replaced the --set value unseen, even one that is no number (horizon_s=abc)
        raise UserError(f"--horizon {args.horizon:g} conflicts with --set horizon_s={overrides['horizon_s']}; drop one")
    if args.trace:
        kind = overrides.get("workload.kind", "trace")
        if kind != "trace":
            raise UserError(f"--trace replays a trace but --set workload.kind={kind} asks for another workload; drop one")
        tp = overrides.get("workload.trace_path")
        if tp is not None and str(tp) != str(args.trace):
            raise UserError(f"--trace {str(args.trace)!r} conflicts with --set workload.trace_path={tp}; drop one")
        overrides["workload.kind"] = "trace"
        overrides["workload.trace_path"] = str(args.trace)
        # --trace replays the whole trace unless --horizon (or horizon_s) cuts it: the
        # largest float is a horizon no timestamp reaches (issue #17: rows dated years
        # apart were dropped after a default 1e7 s)
        overrides.setdefault("horizon_s", sys.float_info.max)
    if args.rate_scale is not None:
        # multiplies the rate the run would have without it: a trace config's own rate_scale
        # (azure-trace-route's 11.25 x 2 = 22.5, not 2), else the workload's rate_per_s
        scen0 = load_scenario(args.config, overrides)
        if scen0.workload.kind == "trace":
            key = "workload.rate_scale"
            if key in overrides:
                raise UserError(f"--rate-scale {args.rate_scale:g} conflicts with --set {key}={overrides[key]}; drop one")
            overrides[key] = scen0.workload.rate_scale * args.rate_scale
        else:
            overrides["workload.rate_per_s"] = scen0.workload.rate_per_s * args.rate_scale
    if args.horizon is not None:
        overrides["horizon_s"] = args.horizon
    scen = load_scenario(args.config, overrides)
    check_env_sections(scen)  # the env options an env built from this config would refuse
    if args.cost_model:
        scen = _with_cost_model(scen, args.cost_model)
    trace = None
    if args.chrome_trace is None and args.chrome_trace_max_events is not None:
        raise UserError("--chrome-trace-max-events needs --chrome-trace PATH (the trace it limits)")
    if args.chrome_trace is not None:
        check_output_file(args.chrome_trace, "--chrome-trace")
        trace = ChromeTrace(max_events=args.chrome_trace_max_events or CHROME_TRACE_MAX_EVENTS)
    t0 = time.perf_counter()
    sim = Simulation(scen, seed=args.seed, router=args.policy, keep_records=bool(args.plots or args.records), timeline=trace)
    sampler = None
    if args.plots:
        # about 600 samples over the arrivals: a --trace replay's span is its own (its horizon
        # is unbounded), known once the run has read it
        span = scen.horizon_s if not args.trace else float(getattr(sim.source, "span_s", 0.0))
        sampler = TimelineSampler(sim.cluster, max(span / 600, 0.05))
    summary = sim.run()
    summary["wall_s"] = round(time.perf_counter() - t0, 4)
    summary["policy"] = args.policy or scen.router
    summary["workload"] = workload_label(scen.workload)
    summary["slo"] = slo_targets(scen.workload)
    title = f"{scen.name}, {summary['workload']}, router {summary['policy']}"
    rows = len(sim.source) if scen.workload.kind == "trace" and not scen.workload.loop else None
    trace_note = ""
    if rows is not None and summary["requests_total"] < rows:
        if scen.max_requests is not None and summary["requests_total"] >= scen.max_requests:
            cut = f"max_requests={scen.max_requests} ended the replay"
        else:
            cut = f"horizon_s={scen.horizon_s:g} s ended the replay"
        if args.horizon is not None or "horizon_s" in overrides or "max_requests" in overrides:
            # a cut the command line asked for may be a mistake (a --horizon shorter than the trace)
            print(f"disagg-gym: warning: replayed {summary['requests_total']} of {rows} trace rows: {cut}",
                  file=sys.stderr)
        else:  # the config's own horizon: by design, so a note in the summary, not a warning
            trace_note = f"trace rows    replayed {summary['requests_total']:,} of {rows:,} (the config's {cut})"
    skipped = getattr(sim.source, "skipped_rows", 0)
    if scen.workload.kind == "trace":
        summary["trace_rows_skipped"] = skipped
    if skipped:
        reasons = getattr(sim.source, "skip_reasons", ())
        print(f"disagg-gym: warning: skipped {skipped} bad trace row(s) (workload.on_bad_row=skip)"
              + (f"; first: {reasons[0]}" if reasons else ""), file=sys.stderr)
    if sim.drain_cut_s is not None:
        print(
            f"disagg-gym: warning: draining stopped at {sim.drain_cut_s:g} s simulated (10x the horizon) with "
            f"{summary.get('unfinished', 0)} request(s) still in flight, counted as unfinished: the cluster "
            "does not keep up with this load (fewer requests, more instances, or --set horizon_policy=fail)",
            file=sys.stderr,
        )
    # Files last-minute trouble can break (a disk filling after the up-front path checks): the
    # summary is printed whatever happens to them, then the first failure is the error.
    failed: BaseException | None = None
    try:
        if args.records:
            _write_records(sim, Path(args.records))
        if args.plots:
            out = Path(args.plots)
            rec = sim.recorder
            files = [
                plots.latency_cdf(
                    {summary["policy"]: {"ttft": rec.ttft, "tpot": rec.tpot, "e2e": rec.e2e}},
                    out / "latency_cdf.png",
                    title,
                    slo=summary["slo"],
                ),
                plots.timeline(sampler.rows if sampler else [], out / "timeline.png", title),
            ]
            summary["plots"] = [str(p) for p in files]
        if trace is not None:
            try:
                summary["chrome_trace"] = str(trace.write(args.chrome_trace))
            except OSError as exc:
                raise UserError(f"--chrome-trace {args.chrome_trace}: cannot write ({exc.strerror or exc})") from None
            if trace.dropped:
                summary["chrome_trace_dropped_events"] = trace.dropped
    except (OSError, UserError) as exc:
        failed = exc
    dropped_line = (
        f"chrome trace kept the first {trace.max_events} events and dropped {trace.dropped} "
        "(raise --chrome-trace-max-events to keep more)"
        if trace is not None and trace.dropped and "chrome_trace" in summary else ""
    )
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        if dropped_line:
            print(f"disagg-gym: {dropped_line}", file=sys.stderr)  # stdout stays one JSON object
    else:
        print(fmt_summary(summary))
        if trace_note:
            print(trace_note)
        if "plots" in summary:
            print(f"plots         {', '.join(summary['plots'])}")
        if "chrome_trace" in summary:
            print(f"chrome trace  {summary['chrome_trace']} (open in https://ui.perfetto.dev or chrome://tracing)")
        if dropped_line:
            print(dropped_line)
        if failed is None:
            print(_next_steps(args))
    if failed is not None:
        sys.stdout.flush()  # the summary above, then the one-line error on stderr
        raise failed
    return 0


def _next_steps(args: argparse.Namespace) -> str:
    """The closing 'what next' lines of ``simulate``'s human-readable output."""
    tips = ["--json (every KPI)"]
    if not args.plots:
        tips.append("--plots DIR (latency CDFs, timeline)")
    if args.chrome_trace is None:
        tips.append("--chrome-trace FILE (ui.perfetto.dev)")
    tips.append("--policy NAME (`disagg-gym list --policies`)")
    return (
        f"note          {UTILISATION_NOTE}\n"
        f"next          {', '.join(tips)}; other configs: `disagg-gym list`; "
        "docs/simulator.md explains every KPI"
    )


def _with_cost_model(scen: Any, cost_model: str) -> Any:
    """The scenario with every instance group's ``cost_model`` set (validated)."""
    groups = tuple(replace(g, cost_model=cost_model) for g in scen.cluster.groups)
    cluster = replace(scen.cluster, groups=groups)
    try:
        cluster.validate()
    except ValueError as exc:
        raise UserError(f"--cost-model: {exc}") from None
    return replace(scen, cluster=cluster)


def _write_records(sim: Any, path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(RECORD_FIELDS)
    w.writerows(sim.recorder.records)
    atomic_write_text(path, buf.getvalue())


# ====================================================================== predict
_PREDICT_FIELDS = ("gpu", "model", "phase", "batch", "length", "link", "bytes", "tp", "cost_model")


def _predict_one(q: dict[str, Any], where: str = "") -> dict[str, Any]:
    unknown = [k for k in q if k not in _PREDICT_FIELDS]
    if unknown:
        raise UserError(f"{where}unknown field {unknown[0]!r}; expected: {', '.join(_PREDICT_FIELDS)}")
    phase = q.get("phase")
    cost_model = str(q.get("cost_model") or "roofline")
    if phase == "kv_transfer" and cost_model != "roofline" and q.get("bytes") is not None and q.get("link") is None:
        # A table with kv_transfer rows answers directly (it needs the instance it describes);
        # with 'link' the tier answers, as in the simulator, whose transfers use the link tiers.
        if q.get("gpu") is None or q.get("model") is None:
            raise UserError(f"{where}phase kv_transfer with cost model {cost_model!r} needs 'gpu' and 'model'")
        try:
            table_cost = build_cost(str(q["gpu"]), str(q["model"]), int(q.get("tp", 1)), cost_model)
        except (ValueError, OSError) as exc:
            raise UserError(f"{where}{exc}") from None
        secs = table_cost.kv_transfer_s(float(q["bytes"]))
        if secs is not None:
            return {"ms": secs * 1e3}
        raise UserError(f"{where}{cost_model}: the table has no kv_transfer rows; pass 'link' to use a tier")
    if phase == "kv_transfer":
        link, nbytes = q.get("link"), q.get("bytes")
        if link is None or nbytes is None:
            raise UserError(f"{where}phase kv_transfer needs 'link' and 'bytes' (got link={link!r}, bytes={nbytes!r})")
        if (
            isinstance(nbytes, bool)
            or not isinstance(nbytes, (int, float))
            or not nbytes >= 0
            or not math.isfinite(nbytes)
        ):
            raise UserError(f"{where}'bytes' must be a non-negative finite number (got {nbytes!r})")
        ignored = [k for k in ("batch", "length") + (("model",) if cost_model == "roofline" else ())
                   if q.get(k) is not None]
        if ignored:  # bytes fix a transfer; the roofline's link tiers know no model (a table's may)
            raise UserError(f"{where}'{ignored[0]}' does not apply to phase kv_transfer (it takes link, bytes, gpu, tp)")
        tp = q.get("tp", 1)
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise UserError(f"{where}'tp' must be a positive integer (got {tp!r})")
        try:
            # As the simulator sees it: the tier scaled to the sending GPU (A100 NVLink is not
            # H100's), and a lone transfer between two tp-GPU instances uses tp GPU pairs.
            spec = link_for_gpu(str(link), get_gpu(str(q["gpu"]))) if q.get("gpu") is not None else get_link(str(link))
        except ValueError as exc:
            raise UserError(f"{where}{exc}") from None
        res: dict[str, Any] = {"ms": (spec.latency_s + float(nbytes) / (spec.bandwidth_gbps * 1e9 * tp)) * 1e3}
        if spec.name != link:  # a GPU without NVLink sends over PCIe, as in the simulator
            res["tier"] = spec.name
        return res
    if phase not in ("prefill", "decode"):
        raise UserError(f"{where}'phase' must be prefill, decode or kv_transfer (got {phase!r})")
    ignored = [k for k in ("link", "bytes") if q.get(k) is not None]
    if ignored:
        raise UserError(f"{where}'{ignored[0]}' applies only to phase kv_transfer (got phase {phase})")
    missing = [k for k in ("gpu", "model", "batch", "length") if q.get(k) is None]
    if missing:
        raise UserError(f"{where}phase {phase} needs {', '.join(missing)}")
    for k in ("batch", "length"):
        v = q[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{where}'{k}' must be a positive integer (got {v!r})")
    if q["batch"] > PREDICT_MAX_BATCH:
        raise UserError(f"{where}'batch' must be at most {PREDICT_MAX_BATCH:,} (got {q['batch']!r})")
    tp = q.get("tp", 1)
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise UserError(f"{where}'tp' must be a positive integer (got {tp!r})")
    try:
        gpu = get_gpu(str(q["gpu"]))
        model = load_model(str(q["model"]))
    except (ValueError, OSError) as exc:
        raise UserError(f"{where}{exc}") from None
    heads = model.num_attention_heads
    if heads % tp:
        valid = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        raise UserError(
            f"{where}{'tp' if where else '--tp'} {tp} must divide the {heads} attention heads of {model.name} (valid: {valid})"
        )
    try:
        cost = build_cost(gpu, model, tp, cost_model)
    except (ValueError, OSError) as exc:
        raise UserError(f"{where}{exc}") from None
    if cost.kv_capacity_tokens(0.0) <= 0:
        raise UserError(
            f"{where}model {cost.model.name} ({cost.weight_bytes_per_gpu * tp / 1e9:.1f} GB of weights) does not fit "
            f"on {cost.gpu.name} at tp={tp} ({cost.gpu.hbm_gb:g} GB per GPU); use a larger --tp"
        )
    b, n = q["batch"], q["length"]
    ctx = cost.model.max_position_embeddings
    if ctx is not None and n > ctx:
        raise UserError(f"{where}'length' {n} exceeds the context length of {cost.model.name} ({ctx:,} tokens)")
    if phase == "prefill":
        s = cost.prefill_s([n] * b)
        reduced = b * n  # every prompt token's hidden state is all-reduced
    else:
        s = cost.decode_s([n] * b)
        reduced = b  # one new token per sequence
    out: dict[str, Any] = {"ms": s * 1e3}
    cap = cost.kv_capacity_tokens(0.0)  # every byte beside the weights
    if b * n > cap:  # a time for a batch no instance holds: say so
        out["kv_capacity_tokens"] = cap
    if tp > 1 and hasattr(cost, "allreduce_s"):
        # Share of the iteration spent in the tensor-parallel all-reduces (already in "ms").
        out["allreduce_ms"] = cost.allreduce_s(reduced) * 1e3
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    """Predicts one iteration or transfer time, or a file of queries."""
    if args.queries:
        given = [k for k in _PREDICT_FIELDS if k != "cost_model" and getattr(args, k, None) is not None]
        if given:  # they were ignored: each query line carries its own fields
            raise UserError(f"--queries takes every field from its lines; drop "
                            f"{', '.join('--' + k.replace('_', '-') for k in given)} (only --cost-model "
                            "applies to every line)")
        path = Path(args.queries)
        lines = read_text_file(path).splitlines()  # names the file: missing, unreadable, not UTF-8
        out = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{no}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise UserError(f"{path}:{no}: invalid JSON (nested too deeply)") from None
            except ValueError as exc:  # e.g. an integer literal over Python's digit limit
                raise UserError(f"{path}:{no}: invalid JSON ({exc})") from None
            if not isinstance(q, dict):
                raise UserError(f"{path}:{no}: expected a JSON object (got {line.strip()[:40]!r})")
            if args.cost_model and "cost_model" not in q:
                q["cost_model"] = args.cost_model
            out.append(json.dumps(_predict_one(q, f"{path}:{no}: "), allow_nan=False))
        if not out:
            raise UserError(f"{path}: no queries (every line is empty)")
        print("\n".join(out))
        return 0
    q = {k: getattr(args, k) for k in _PREDICT_FIELDS if getattr(args, k, None) is not None}
    if args.phase is None:
        raise UserError("predict needs --phase (prefill, decode or kv_transfer) or --queries FILE")
    res = _predict_one(q)
    inputs = _predict_inputs(q)
    if args.json:
        print(json.dumps({**res, "inputs": inputs}, allow_nan=False))
    else:
        print(fmt_prediction(inputs, res))
    return 0


def _predict_inputs(q: dict[str, Any]) -> dict[str, Any]:
    """The query as answered: the given fields plus the defaults used (``tp``, ``cost_model``)."""
    out = {k: q[k] for k in _PREDICT_FIELDS if q.get(k) is not None}
    if q.get("phase") in ("prefill", "decode"):
        out.setdefault("tp", 1)
        out.setdefault("cost_model", "roofline")
    return out


def _spec_label(value: str, load: Any) -> str:
    """A catalog id as it is; a model or GPU file as ``its name (path)``."""
    name = load(str(value)).name
    return str(value) if name == str(value) else f"{name} ({value})"


def fmt_prediction(inputs: dict[str, Any], res: dict[str, Any]) -> str:
    """``predict``'s answer with its inputs: ``decode iteration of llama-3.1-8b on h100-sxm ... -> 12.3 ms``."""
    phase = inputs.get("phase")
    if phase == "kv_transfer":
        via = f"over {inputs['link']}" if inputs.get("link") else f"from {inputs.get('cost_model')}"
        if inputs.get("gpu"):
            via += f" from {inputs['gpu']}"
        if inputs.get("tp", 1) > 1:
            via += f" (tp {inputs['tp']}: {inputs['tp']} GPU pairs)"
        what = f"KV transfer of {inputs['bytes']:,} bytes {via}"
    else:
        shape = (
            f"batch of {inputs['batch']} prompt(s) x {inputs['length']:,} tokens"
            if phase == "prefill"
            else f"batch of {inputs['batch']} sequence(s) at context {inputs['length']:,} tokens"
        )
        what = (
            f"{phase} iteration of {_spec_label(inputs['model'], load_model)} on "
            f"{_spec_label(inputs['gpu'], get_gpu)} (tp {inputs['tp']}, {inputs['cost_model']} cost model), {shape}"
        )
    if "tier" in res:
        what += f" (no {inputs['link']} on {inputs['gpu']}: over {res['tier']})"
    line = f"{what}: {res['ms']:.4f} ms"
    if "allreduce_ms" in res:
        line += f" (of which tensor-parallel all-reduce {res['allreduce_ms']:.4f} ms)"
    if "kv_capacity_tokens" in res:
        line += (f"\nnote: this batch's KV cache ({inputs['batch'] * inputs['length']:,} tokens) exceeds the "
                 f"{res['kv_capacity_tokens']:,} tokens that fit beside the weights at tp {inputs['tp']}: "
                 "no instance runs it as one batch")
    return line


# ====================================================================== wiring
@dataclass(frozen=True)
class Command:
    """One ``disagg-gym`` subcommand: an entry of a command table.

    The core table (``CORE_COMMANDS``) holds the simulator's commands; other layers add theirs
    through the ``disagg_gym.commands`` entry-point group (each entry point names a sequence of
    ``Command``), so this module never imports them. A later entry replaces an earlier one of
    the same name.

    Attributes:
        name: The subcommand.
        target: ``"module:function"`` run with the parsed arguments (imported only when run).
        help: One line for ``disagg-gym --help``.
        add_args: Adds the subcommand's options to its parser.
        extra: The ``pip install "disagg-gym[EXTRA]"`` extra the command needs, if any
            (checked before ``target`` is imported; see ``disagg_gym.extras``).
    """

    name: str
    target: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    extra: str | None = None


COMMAND_GROUP = "disagg_gym.commands"
"""Entry-point group of command tables added by other packages (``disagg_gym_agents`` adds
train, evaluate, benchmark, validate)."""


def _run(cmd: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if cmd.extra is not None:
            require(cmd.extra)
        module, _, func = cmd.target.partition(":")
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def _add_simulate(s: argparse.ArgumentParser) -> None:
    s.add_argument("--config", default="small-route",
                   help="standard config name (small-route), env id (disagg/SmallRoute-v3) or YAML path "
                   "(default: small-route; see `disagg-gym list`)")
    s.add_argument("--trace", type=Path, help="replay an Azure CSV or Mooncake JSONL trace (format detected)")
    s.add_argument("--rate-scale", type=positive_float, help="multiply the arrival rate (or trace rate) by X")
    s.add_argument("--policy", help="built-in router (default: the config's); see `disagg-gym list --policies`")
    s.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a module of your own that registers a router, "
                   "admission controller or allocator (@ROUTERS.register('name'), ...)")
    s.add_argument("--seed", type=nonneg_int, help="workload/policy seed (default: the config's)")
    s.add_argument("--horizon", type=positive_float, help="simulated seconds of arrivals")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--plots", type=Path, metavar="DIR", help="write latency_cdf.png and timeline.png here (needs the [plots] extra)")
    s.add_argument("--records", type=Path, metavar="CSV", help="write per-request records to this CSV")
    s.add_argument("--chrome-trace", type=Path, metavar="PATH",
                   help="write the run's timeline as Chrome Trace Event JSON (open in ui.perfetto.dev or chrome://tracing)")
    s.add_argument("--chrome-trace-max-events", type=positive_int, default=None, metavar="N",
                   help="keep the first N timeline events (default 200000); the rest are counted as dropped")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (dotted), repeatable")
    s.add_argument("--cost-model", metavar="MODEL", help="cost model of every instance group: roofline or table:PATH")


def _add_predict(q: argparse.ArgumentParser) -> None:
    q.add_argument("--gpu", help="GPU id (h100-sxm, h100-pcie, h200, a100-80gb, b200, l40s, mi300x, gaudi3); "
                                "kv_transfer: the sending GPU, whose link bandwidth the tier scales to (default: H100's)")
    q.add_argument("--model", help="model catalog name or YAML path with Hugging Face config keys")
    q.add_argument("--phase", choices=("prefill", "decode", "kv_transfer"),
                   help="what to time: one prefill iteration, one decode iteration, or one KV transfer")
    q.add_argument("--batch", type=positive_int,
                   help="prompts in the prefill batch, or sequences in the decode batch")
    q.add_argument("--length", type=positive_int, help="prompt length (prefill) or context length (decode)")
    q.add_argument("--tp", type=positive_int,
                   help="tensor-parallel degree (default 1); kv_transfer: both ends' degree, i.e. GPU pairs moving the KV")
    q.add_argument("--link", help="tier: nvlink, pcie, rdma, ethernet (or a finer variant)")
    q.add_argument("--bytes", type=nonneg_int, help="kv_transfer: bytes of KV cache to move")
    q.add_argument("--queries", type=Path, help="JSON lines of queries; prints one JSON result per line")
    q.add_argument("--cost-model", metavar="MODEL", help="roofline (default) or table:PATH (a measured latency table)")
    q.add_argument("--json", action="store_true", help="print one JSON object: ms (and allreduce_ms) plus the inputs")


def add_list_args(sp: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym list``."""
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table (with --policies too)")
    sp.add_argument("--policies", action="store_true", help="list routers, allocators and agents instead")


def _add_bounds(sp: argparse.ArgumentParser) -> None:
    from disagg_gym.bounds import add_bounds_args

    add_bounds_args(sp)


# Typical durations, measured (issue #20): `disagg-gym bench` and `disagg-gym validate` on the
# shared 2-core VM at load average 8-14 (other jobs running), 2026-11-29.
DESCRIPTIONS = {
    "bench": (
        "Measure env decisions/s (every standard id, with CartPole-v1 as the reference in the same "
        "run) and simulator requests/s (8-128 instances), each in a fresh process pinned to one core. "
        "Takes a while: 19 minutes measured on a shared 2-core VM at load average ~10 "
        "(--quick: 5-20 s). Each measurement prints a line "
        "numbered [k/n] with the elapsed time and an estimate of the time left."
    ),
    "validate": (
        "Replay every row of a leaderboard results file and exit 1 naming any row/KPI that differs. "
        "Replaying every row takes about as long as producing them: hours for the committed "
        "leaderboard/results.csv (9,200 episodes) on a shared 2-core VM (an earlier 1,080-row version "
        "took 15-25 minutes at load average 2-4); --configs and --agents replay a subset, --sample N "
        "replays N random rows (seeded by --sample-seed) as a quick check."
    ),
}
"""Long ``--help`` descriptions by command name (other layers' commands included)."""


CORE_COMMANDS: tuple[Command, ...] = (
    Command("simulate", "disagg_gym.cli:cmd_simulate", "run one simulation and print its KPIs", _add_simulate),
    Command("predict", "disagg_gym.cli:cmd_predict",
            "predict one iteration or KV-transfer time from the cost model", _add_predict),
    Command("list", "disagg_gym.commands:cmd_list", "list registered env ids (and policies)", add_list_args),
    Command("bench", "disagg_gym.bench:cmd_bench", "measure env and simulator speed (~20 min on 2 shared cores)",
            add_bench_args),
    Command("bounds", "disagg_gym.bounds:cmd_bounds",
            "upper bounds no policy can exceed (fluid capacity LP); write leaderboard/bounds.csv", _add_bounds),
)
"""The simulator's own commands (the core install: no torch, SB3 or matplotlib)."""


def installed_commands() -> tuple[Command, ...]:
    """``CORE_COMMANDS`` plus every table registered in the ``disagg_gym.commands`` group."""
    table = list(CORE_COMMANDS)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        table += list(ep.load())
    return tuple(table)


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``commands`` (default: ``installed_commands()``)."""
    p = _Parser(prog="disagg-gym", description="Simulator and Gymnasium envs for disaggregated LLM serving.")
    p.add_argument("--version", action="version", version=f"disagg-gym {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    table: dict[str, Command] = {}
    for cmd in commands if commands is not None else installed_commands():
        table[cmd.name] = cmd  # a later entry replaces an earlier one of the same name
    for cmd in table.values():
        sp = sub.add_parser(cmd.name, help=cmd.help, description=DESCRIPTIONS.get(cmd.name, cmd.help))
        cmd.add_args(sp)
        sp.set_defaults(func=_run(cmd))
    return p


def empty_value_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The option of ``argv`` given an empty value (``--out ""``, ``--out=``), or ``None``.

    An empty value is almost always an unset shell variable (``--out "$DIR"``); as a path it
    means the current folder, where a benchmark wrote its results over the repository's own
    files. Only options that take a value count (in the subcommand's parser when ``argv``
    names one).
    """
    sub = parser
    for action in parser._actions:  # argparse has no public accessor for the subparsers
        if isinstance(action, argparse._SubParsersAction):
            cmd = next((t for t in argv if t in action.choices), None)
            if cmd is not None:
                sub = action.choices[cmd]
    takes = {s for a in sub._actions for s in a.option_strings if a.nargs != 0}
    prev = None
    for tok in argv:
        name, eq, value = tok.partition("=")
        if eq and not value and name in takes:
            return name
        if tok == "" and prev in takes:
            return prev
        prev = tok
    return None


def main(argv: Sequence[str] | None = None, commands: Sequence[Command] | None = None) -> int:
    """Entry point of the ``disagg-gym`` console script (``commands``: see ``build_parser``)."""
    parser = build_parser(commands)
    flag = empty_value_option(parser, list(sys.argv[1:] if argv is None else argv))
    if flag is not None:
        print(f"disagg-gym: error: argument {flag}: empty value (an unset shell variable?)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    # Library warnings (e.g. a table extrapolated beyond its grid) as one line each.
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, *_a, **_k: f"disagg-gym: warning: {message}\n"
    try:
        if args.command in ("benchmark", "validate") and getattr(args, "configs", None):
            args.configs = canonical_env_ids(args.configs)  # config names name their ids too
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return rc
    except UserError as exc:  # ConfigError, TraceError and every input check
        print(f"disagg-gym: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`disagg-gym list | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141  # what a shell reports for a process ended by SIGPIPE
    except OSError as exc:  # an output path that went bad after the checks, a full disk
        print(f"disagg-gym: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("disagg-gym: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    raise SystemExit(main())
