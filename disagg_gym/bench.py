"""``disagg-gym bench``: env decisions/s vs CartPole, simulator speed and scaling, PPO steps/s.

Every measurement runs in a fresh child process pinned to one CPU core, so peak memory
(``ru_maxrss``) is per measurement and runs do not disturb each other. Absolute times drift
between machines: compare the ratios (env vs CartPole-v1 measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from disagg_gym import extras

PPO_SKIPPED = 'not measured: needs the [rl] extra (pip install "disagg-gym[rl]")'

#: Control intervals (simulated s) at which the allocate envs are also measured.
FINE_CONTROL_INTERVALS_S = (1.0, 0.25, 0.1)
AZURE_CONV_RATE = 5.53  # req/s of the Azure 2023 conversation trace (shared/data/traces/README.md)
#: Standard configs also timed as one whole run over their horizon, prefix caching as configured
#: (issue #14: mooncake-cache-route, caching on, at >= 10k simulated requests per wall second).
SCENARIO_RUNS = ("mooncake-cache-route",)


def _pin() -> None:
    try:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[-1]})
    except (AttributeError, OSError):
        pass
    # torch is not imported here: its ~190 MB would be in every measurement's peak RSS (the
    # PPO measurement, the only one that uses it, sets its threads itself)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(q: Any, fn_name: str, kwargs: dict[str, Any]) -> None:
    _pin()
    try:
        res = globals()[fn_name](**kwargs)
        res["peak_rss_mb"] = round(_peak_mb(), 1)
        res["openblas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS")  # run_isolated sets 1
        q.put(res)
    except BaseException as exc:  # report, never hang the parent
        q.put({"error": f"{type(exc).__name__}: {exc}"})


def run_isolated(fn_name: str, **kwargs: Any) -> dict[str, Any]:
    """Runs ``fn_name(**kwargs)`` in a fresh spawned process and returns its result dict.

    The child runs numpy's BLAS with one thread (``OPENBLAS_NUM_THREADS=1``; it is pinned to
    one core anyway): an idle OpenBLAS worker spins for a while after numpy's import, and beside
    a one-core measurement on a small machine it took CPU from it.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn_name, kwargs))
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # a spawned child starts with the parent's environment
    try:
        p.start()
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved
    res = q.get()
    p.join()
    return res


# ------------------------------------------------------------------ measurements
def bench_cartpole(seconds: float) -> dict[str, Any]:
    """Steps/s of Gymnasium's CartPole-v1 under a random policy (the reference)."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 2, 1 << 16).tolist()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(1000):
            _, _, term, trunc, _ = env.step(acts[n & 0xFFFF])
            n += 1
            if term or trunc:
                env.reset()
        if time.perf_counter() > deadline:
            break
    return {"steps_per_s": n / (time.perf_counter() - t0), "steps": n}


def bench_env(env_id: str, seconds: float, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decisions/s of a standard env under a uniformly random *masked* policy (masks included).

    ``kwargs`` go to ``gym.make`` (e.g. ``{"control_interval_s": 1.0}``).
    """
    import gymnasium as gym
    import numpy as np

    import disagg_gym  # noqa: F401

    env = gym.make(env_id, **(kwargs or {})).unwrapped
    env.reset(seed=0)
    nvec = [int(x) for x in env.action_space.nvec]
    offs = np.cumsum([0] + nvec[:-1]).tolist()
    rng = np.random.default_rng(0)
    u = rng.random(1 << 16).tolist()
    dims = list(zip(offs, nvec))
    n = 0
    episodes = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(20):
            mask = env.action_masks().tolist()
            act = []
            for o, k in dims:
                valid = [i for i in range(k) if mask[o + i]]
                act.append(valid[int(u[(n + o) & 0xFFFF] * len(valid))])
            _, _, term, trunc, _ = env.step(np.array(act, dtype=np.int64))
            n += 1
            if term or trunc:
                episodes += 1
                env.reset()
        if time.perf_counter() > deadline:
            break
    dt = time.perf_counter() - t0
    return {"decisions_per_s": n / dt, "decisions": n, "episodes": episodes, "instances": env.n}


def bench_simulate(instances: int, rate_mult: float, horizon_s: float, router: str) -> dict[str, Any]:
    """Simulated requests per wall second on an Azure-conversation-like hour."""
    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    half = instances // 2
    overrides = {
        "horizon_s": horizon_s,
        "router": router,
        "cluster.groups": [
            {"gpu": "h100-sxm", "count": half, "role": "prefill"},
            {"gpu": "h100-sxm", "count": instances - half, "role": "decode", "max_batch": 128},
        ],
        "workload": {
            "kind": "poisson", "rate_per_s": AZURE_CONV_RATE * rate_mult, "lengths": "azure_conv",
            "slo_ttft_s": 0.5, "slo_ttft_per_1k_prompt_s": 0.25, "slo_tpot_s": 0.05,
        },
    }
    scen = load_scenario("small-route", overrides)
    t0 = time.perf_counter()
    sim = Simulation(scen, seed=0, keep_records=False)
    s = sim.run()
    wall = time.perf_counter() - t0
    return {
        "requests": s["requests_total"], "wall_s": wall, "simulated_s": s["simulated_s"],
        "requests_per_wall_s": s["requests_total"] / wall, "x_real_time": s["simulated_s"] / wall,
        "us_per_request": 1e6 * wall / max(1, s["requests_total"]), "events": s["events"],
        "slo_attainment": s["slo_attainment"],
    }


def bench_scenario(name: str, horizon_s: float | None = None) -> dict[str, Any]:
    """Simulated requests per wall second of one standard config run as written: construction
    (trace loading included) plus ``Simulation.run()`` over its horizon (``horizon_s`` overrides
    it), prefix caching as configured. Trace configs read their trace relative to the working
    directory, as ``disagg-gym simulate`` does.
    """
    from dataclasses import replace

    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    scen = load_scenario(name)
    if horizon_s is not None:
        scen = replace(scen, horizon_s=horizon_s)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    sim = Simulation(scen, keep_records=False)
    s = sim.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "config": name, "prefix_cache": scen.cluster.prefix_cache.enabled, "horizon_s": scen.horizon_s,
        "requests": s["requests_total"], "events": s["events"], "wall_s": wall, "cpu_s": cpu,
        "requests_per_wall_s": s["requests_total"] / wall, "requests_per_cpu_s": s["requests_total"] / cpu,
        "load_avg_1m": load,
    }


def bench_ppo(env_id: str, timesteps: int) -> dict[str, Any]:
    """SB3 PPO training steps/s (MlpPolicy, 1 env, 1 torch thread)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)

    import disagg_gym  # noqa: F401

    env = gym.make(env_id)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=4, seed=0, verbose=0, device="cpu")
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    dt = time.perf_counter() - t0
    return {"train_steps_per_s": timesteps / dt, "timesteps": timesteps}


# ------------------------------------------------------------------ driver
def machine() -> dict[str, Any]:
    """A description of this machine for the results table."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numpy as np

    from disagg_gym import __version__

    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "disagg_gym": __version__, "platform": platform.platform(),
    }


# Budgets (expected wall seconds per measurement) only weight the ETA printed after each one:
# the time left is the budget left scaled by (elapsed / budget done) of this run, so a slow or
# loaded machine corrects the estimate as it goes. Rough figures from docs/data/bench_2026-11-27.json.
SPAWN_OVERHEAD_S = 2.0
"""Start of a fresh child process (interpreter, numpy, gymnasium, disagg_gym imports)."""
SIM_S_PER_REQUEST = 50e-6
"""Wall seconds per simulated request (``us_per_request`` ~ 40-65 in the reference run)."""
PPO_STEPS_PER_S = 800.0
"""SB3 PPO training steps/s of the reference run (plus ~5 s of torch import)."""


@dataclass
class Measurement:
    """One ``bench`` measurement: ``run_isolated(fn, **kwargs)``, then ``report(result)``.

    ``report`` stores the result and returns the line printed for it; ``budget_s`` is its
    expected wall time (weights the ETA only).
    """

    fn: str
    kwargs: dict[str, Any]
    budget_s: float
    report: Callable[[dict[str, Any]], str]


def duration(seconds: float) -> str:
    """``40 s``, ``2 min``, ``1.5 h``: a rough duration for progress lines."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eta_s(elapsed_s: float, budget_done_s: float, budget_left_s: float) -> float:
    """Time left: the budget left scaled by how this run's elapsed time compares to its budget."""
    if budget_done_s <= 0:
        return budget_left_s
    return budget_left_s * elapsed_s / budget_done_s


def fine_variant_ids() -> list[str]:
    """The registered ``fine`` (finer control interval) variants of the allocation configs."""
    from disagg_gym.env.registration import STANDARD_CONFIGS, STANDARD_VARIANTS, variant_id_for

    return [variant_id_for(n, STANDARD_CONFIGS[n], "fine") for n, vs in sorted(STANDARD_VARIANTS.items()) if "fine" in vs]


def run_plan(
    plan: list[Measurement],
    log: Callable[[str], None],
    run: Callable[..., dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Runs each measurement in order; after each logs ``[k/n] <line>; elapsed X, about Y left``.

    ``run`` defaults to ``run_isolated`` (a fresh pinned process per measurement).
    """
    run = run or run_isolated
    n = len(plan)
    total = sum(m.budget_s for m in plan)
    done = 0.0
    t0 = clock()
    for k, m in enumerate(plan, start=1):
        line = m.report(run(m.fn, **m.kwargs))
        done += m.budget_s
        elapsed = clock() - t0
        tail = "done" if k == n else f"about {duration(eta_s(elapsed, done, total - done))} left"
        log(f"[{k}/{n}] {line}; elapsed {duration(elapsed)}, {tail}")


def run_bench(quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Runs every measurement; ``quick`` runs one of each kind, shortened (a smoke test of about
    a minute, not for reporting): CartPole, one route and one allocation env, the smallest
    simulator row, the scenario row over 60 s, and 1,024 PPO steps.

    With ``progress`` each measurement prints one line as it finishes, numbered ``[k/n]``, with
    the elapsed time and an estimate of the time left.
    """
    from disagg_gym.env.registration import registered_ids, standard_envs

    secs = 1.0 if quick else 5.0
    out: dict[str, Any] = {"machine": machine(), "quick": quick}
    envs: dict[str, Any] = {}
    sims: list[dict[str, Any]] = []
    scens: list[dict[str, Any]] = []
    out["envs"] = envs
    out["simulate"] = sims
    out["scenarios"] = scens

    def log(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    def cartpole(r: dict[str, Any]) -> str:
        out["cartpole"] = r
        return f"CartPole-v1: {r['steps_per_s']:,.0f} steps/s"

    def env(key: str, long: bool) -> Callable[[dict[str, Any]], str]:
        def report(r: dict[str, Any]) -> str:
            envs[key] = r
            if "error" in r:
                return f"{key}: {r['error']}"
            r["ratio_to_cartpole"] = r["decisions_per_s"] / out["cartpole"]["steps_per_s"]
            if long:
                return (f"{key}: {r['decisions_per_s']:,.0f} decisions/s ({r['ratio_to_cartpole']:.3f}x CartPole), "
                        f"{r['peak_rss_mb']} MB")
            return f"{key}: {r['decisions_per_s']:,.0f} decisions/s"
        return report

    def simulate(inst: int, mult: int, horizon: float) -> Callable[[dict[str, Any]], str]:
        def report(r: dict[str, Any]) -> str:
            r.update({"instances": inst, "rate_mult": mult, "horizon_s": horizon, "router": "round_robin"})
            sims.append(r)
            if "error" in r:
                return f"simulate {inst} inst x{mult}: {r['error']}"
            return (f"simulate {inst} inst x{mult}: {r['requests']} req in {r['wall_s']:.2f}s = "
                    f"{r['requests_per_wall_s']:,.0f} req/s, {r['x_real_time']:,.0f}x real time, {r['peak_rss_mb']} MB")
        return report

    def scenario(name: str) -> Callable[[dict[str, Any]], str]:
        def report(r: dict[str, Any]) -> str:
            r.setdefault("config", name)
            scens.append(r)
            if "error" in r:
                return f"run {name}: {r['error']}"
            return (f"run {name} (prefix cache {'on' if r['prefix_cache'] else 'off'}): {r['requests']} req in "
                    f"{r['wall_s']:.2f}s = {r['requests_per_wall_s']:,.0f} req/s, {r['peak_rss_mb']} MB")
        return report

    def ppo(r: dict[str, Any]) -> str:
        out["ppo"] = r
        if "error" in r:
            return f"PPO on disagg/SmallRoute-v3: {r['error']}"
        return f"PPO on disagg/SmallRoute-v3: {r['train_steps_per_s']:,.0f} steps/s"

    timed = secs + SPAWN_OVERHEAD_S
    plan = [Measurement("bench_cartpole", {"seconds": secs}, timed, cartpole)]
    if quick:  # one env of each task (SmallRoute for routing: it needs no trace file)
        by_task: dict[str, str] = {}
        for e in sorted(standard_envs(), key=lambda e: e["config"] != "small-route"):
            by_task.setdefault(e["task"], e["id"])
        env_ids = [by_task[t] for t in ("route", "allocate") if t in by_task]
    else:
        env_ids = registered_ids()
    plan += [Measurement("bench_env", {"env_id": i, "seconds": secs}, timed, env(i, True)) for i in env_ids]
    if not quick:
        # the registered allocation variants at a finer control interval (issue #16 item 8)
        plan += [Measurement("bench_env", {"env_id": v, "seconds": secs}, timed, env(v, False)) for v in fine_variant_ids()]
        # Allocation envs at finer control intervals (issue #16): a step simulates
        # control_interval_s of traffic, so steps/s scale about inversely with it.
        for e in standard_envs():
            if e["task"] != "allocate":
                continue
            for ci in FINE_CONTROL_INTERVALS_S:
                key = f"{e['id']} control_interval_s={ci:g}"
                plan.append(Measurement("bench_env", {"env_id": e["id"], "seconds": secs,
                                                      "kwargs": {"control_interval_s": ci}}, timed, env(key, False)))
    horizon = 300.0 if quick else 3600.0
    for inst in (8,) if quick else (8, 32, 128):
        for mult in (1,) if quick else (1, 4, 16):
            kw = {"instances": inst, "rate_mult": float(mult), "horizon_s": horizon, "router": "round_robin"}
            budget = SPAWN_OVERHEAD_S + AZURE_CONV_RATE * mult * horizon * SIM_S_PER_REQUEST
            plan.append(Measurement("bench_simulate", kw, budget, simulate(inst, mult, horizon)))
    for name in SCENARIO_RUNS:
        kw = {"name": name, "horizon_s": 60.0 if quick else None}
        plan.append(Measurement("bench_scenario", kw, SPAWN_OVERHEAD_S + 5000 * SIM_S_PER_REQUEST * 4, scenario(name)))
    has_rl = extras.has("rl", "torch", "stable_baselines3")
    if has_rl:
        steps = 1024 if quick else 8192
        plan.append(Measurement("bench_ppo", {"env_id": "disagg/SmallRoute-v3", "timesteps": steps},
                                SPAWN_OVERHEAD_S + 5.0 + steps / PPO_STEPS_PER_S, ppo))
    log(f"bench: {len(plan)} measurements, each in a fresh process pinned to one core")
    run_plan(plan, log)
    if not has_rl:
        # PPO speed is measured only when the [rl] extra is installed (the core install has no torch)
        out["ppo"] = {"skipped": PPO_SKIPPED}
        log(f"PPO: {PPO_SKIPPED}")
    return out


def to_markdown(res: dict[str, Any]) -> str:
    """Results as Markdown tables."""
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores (each measurement pinned to one core), Python {m['python']}, "
        f"numpy {m['numpy']}, disagg-gym {m['disagg_gym']}.",
        "",
        f"CartPole-v1 reference: {res['cartpole']['steps_per_s']:,.0f} steps/s.",
        "",
        "| env id | instances | decisions/s | ratio to CartPole-v1 | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for env_id, r in res["envs"].items():
        if "error" in r:
            lines.append(f"| {env_id} | | error: {r['error']} | | |")
        else:
            lines.append(f"| {env_id} | {r['instances']} | {r['decisions_per_s']:,.0f} | {r['ratio_to_cartpole']:.3f} | {r['peak_rss_mb']} |")
    lines += [
        "",
        "| instances | rate (x Azure conv) | requests | wall (s) | requests / wall s | x real time | us / request | peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["simulate"]:
        if "error" in r:
            lines.append(f"| {r['instances']} | {r['rate_mult']} | error: {r['error']} | | | | | |")
        else:
            lines.append(
                f"| {r['instances']} | {r['rate_mult']} | {r['requests']:,} | {r['wall_s']:.2f} | {r['requests_per_wall_s']:,.0f} | "
                f"{r['x_real_time']:,.0f} | {r['us_per_request']:.1f} | {r['peak_rss_mb']} |"
            )
    if res.get("scenarios"):
        lines += [
            "",
            "| config (as written) | prefix cache | requests | wall (s) | requests / wall s | requests / CPU s | load (1 min) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in res["scenarios"]:
            if "error" in r:
                lines.append(f"| {r['config']} | | error: {r['error']} | | | | |")
            else:
                lines.append(
                    f"| {r['config']} | {'on' if r['prefix_cache'] else 'off'} | {r['requests']:,} | {r['wall_s']:.2f} | "
                    f"{r['requests_per_wall_s']:,.0f} | {r['requests_per_cpu_s']:,.0f} | {r['load_avg_1m']:.1f} |"
                )
    ppo = res.get("ppo", {})
    if "skipped" in ppo:
        lines += ["", f"SB3 PPO: {ppo['skipped']}."]
    if "train_steps_per_s" in ppo:
        lines += ["", f"SB3 PPO (MlpPolicy, 1 env, 1 thread) on disagg/SmallRoute-v3: {ppo['train_steps_per_s']:,.0f} steps/s, peak RSS {ppo['peak_rss_mb']} MB."]
    return "\n".join(lines) + "\n"


def cmd_bench(args: argparse.Namespace) -> int:
    """CLI entry point."""
    from disagg_gym.io import atomic_write_text, check_output_file

    if args.markdown:
        check_output_file(args.markdown, "--markdown")  # before the minutes of measurements
    res = run_bench(quick=args.quick, progress=not args.json)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print()
        print(to_markdown(res))
    if args.markdown:  # after printing: a write that fails still leaves the results on stdout
        atomic_write_text(args.markdown, to_markdown(res))
    return 0


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """Flags of ``disagg-gym bench``."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true",
                   help="one short measurement of each kind (a smoke test of about a minute; not for reporting)")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables to this Markdown file")
