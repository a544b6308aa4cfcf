"""One simulation run: wires engine, workload, cluster, policies and recorder; runs; summarises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from disagg_gym.errors import UserError
from disagg_gym.cluster.cluster import Cluster, ClusterObserver, FanOut, Router
from disagg_gym.cluster.policies import ALLOCATORS, ROUTERS
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.metrics.summary import summarize
from disagg_gym.rng import RngStreams
from disagg_gym.scenario import AllocatorConfig, ScenarioConfig
from disagg_gym.sim.engine import Engine
from disagg_gym.workload import ArrivalSource, WorkloadConfig

if TYPE_CHECKING:
    from disagg_gym.metrics.chrome_trace import TimelineObserver


def make_router(
    name: str, streams: RngStreams, admission: dict[str, dict[str, Any]] | None = None
) -> Router:
    """Builds a registered router; random ones (``uses_rng``) get the ``router`` stream.

    A composed name ``<router>+<admission>`` (``jsq+ttft_guard``) wraps the router in an
    :class:`~disagg_gym.cluster.admission.AdmittedRouter`; the controller's parameters are
    ``admission[<admission>]`` (the scenario's ``admission`` section).
    """
    from disagg_gym.cluster.admission import AdmittedRouter, make_admission, split_name

    base, adm = split_name(name)
    cls = ROUTERS.get(base)
    try:
        rt = cls(streams.get("router")) if cls.uses_rng else cls()
    except TypeError as exc:  # a router of the user's own with another constructor (was a traceback)
        raise UserError(f"router {base!r}: {exc}; a router is built as cls(rng) when uses_rng = True, "
                        "else cls()") from None
    if adm is None:
        return rt
    return AdmittedRouter(rt, make_admission(adm, (admission or {}).get(adm)), name=name)


def make_allocator(cfg: AllocatorConfig) -> Any | None:
    """Builds the configured allocator (``None`` for ``name: none``).

    An allocator is a dataclass; each of its public fields is read from the allocator config
    key of the same name (``interval_s``, ``prefill_fraction``, ...), so a new allocator is one
    registered class plus, for a new parameter, one ``AllocatorConfig`` field.
    """
    if cfg.name == "none":
        return None
    cls = ALLOCATORS.get(cfg.name)
    params = [f.name for f in fields(cls) if not f.name.startswith("_")]
    lacking = [p for p in params if not hasattr(cfg, p)]
    if lacking:  # was an AttributeError traceback at run time
        raise UserError(f"allocator {cfg.name!r} takes {lacking[0]!r}, which the allocator config has no key for: "
                        "add a field of that name to disagg_gym.scenario.AllocatorConfig")
    return cls(**{p: getattr(cfg, p) for p in params})


def workload_source(
    workload: WorkloadConfig,
    streams: RngStreams,
    horizon_s: float,
    max_requests: int | None,
    window: tuple[float, float | None] | None = None,
) -> ArrivalSource:
    """The arrival source of ``workload`` (one ``window`` of it, if given) up to ``horizon_s``.

    The one place a run's arrivals are built: a ``Simulation`` and anything that must count the
    same arrivals ahead of it (the env's warm-up cap) call this with the same arguments.
    """
    if window is not None:
        workload = replace(workload, window_start_s=window[0], window_end_s=window[1])
    return workload.build(streams, horizon_s=horizon_s, max_requests=max_requests)


class Simulation:
    """A ready-to-run simulation of one scenario.

    Args:
        scenario: The scenario config.
        seed: Workload/policy seed (defaults to the scenario's).
        router: Router name or object; ``None`` uses the scenario's ``router``.
        keep_records: Keep per-request records (CSV, CDF plots); off = streaming stats only.
        keep_requests: Keep ``Request`` objects (for invariant checks).
        external: Leave routing to the caller (the env): arrivals park in ``cluster.pending``.
        control_interval_s: External allocation decision interval (the env's allocate task).
        use_allocator: Build the scenario's allocator (off when the caller allocates).
        workload_window: ``(start_s, end_s)`` slice of the workload to replay.
        timeline: Optional timeline hooks passed to the cluster (e.g.
            ``disagg_gym.metrics.chrome_trace.ChromeTrace``).
        extra_observer: Another observer of request outcomes (the env's reward window).
        cost_factory: ``(gpu, tp) -> cost model`` replacing the configured one (the env's
            domain randomisation); ``None`` uses each group's ``cost_model``.
    """

    def __init__(
        self,
        scenario: ScenarioConfig,
        seed: int | None = None,
        *,
        router: str | Router | None = None,
        keep_records: bool = True,
        keep_requests: bool = False,
        external: bool = False,
        control_interval_s: float | None = None,
        use_allocator: bool = True,
        workload_window: tuple[float, float | None] | None = None,
        timeline: TimelineObserver | None = None,
        extra_observer: ClusterObserver | None = None,
        cost_factory: Callable[[str, int], Any] | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.streams = RngStreams(self.seed)
        self.engine = Engine()
        self.source = workload_source(
            scenario.workload, self.streams, scenario.horizon_s, scenario.max_requests, workload_window
        )
        self.recorder = Recorder(keep_records=keep_records, keep_requests=keep_requests)
        if external:
            rt = None
        elif router is None or isinstance(router, str):
            rt = make_router(router or scenario.router, self.streams, scenario.admission)
        else:
            rt = router
        observer: ClusterObserver = self.recorder if extra_observer is None else FanOut(self.recorder, extra_observer)
        self.cluster = Cluster(
            scenario.cluster, self.engine, self.source, observer=observer, router=rt, timeline=timeline,
            allocator=make_allocator(scenario.allocator) if use_allocator else None,
            external_control_interval_s=control_interval_s, cost_factory=cost_factory,
        )
        self.cluster.start()
        self.horizon_drained = False  # set by run() / the env: whether in-flight work ran to completion
        self.drain_cut_s: float | None = None  # set by run(): the time limit that stopped draining, if one did

    def run(self, drain: bool | None = None, max_time_s: float | None = None) -> dict[str, Any]:
        """Runs arrivals to the horizon and (by default) until every request finished.

        Args:
            drain: Keep simulating after the last arrival until the cluster is empty;
                ``None`` follows the scenario's ``horizon_policy`` (``auto``: drain).
                Without draining, requests in flight at the horizon are ``unfinished``
                failures in the summary.
            max_time_s: Hard stop on simulated time (default: 10x the horizon when draining).
                When draining stops there with requests still in flight, ``drain_cut_s`` holds
                that limit (the requests count as ``unfinished``).

        Returns:
            The KPI summary (see ``disagg_gym.metrics.summarize``).
        """
        cl = self.cluster
        if drain is None:
            drain = self.scenario.drains(True)
        self.horizon_drained = drain
        limit = max_time_s if max_time_s is not None else (self.scenario.horizon_s * 10 if drain else self.scenario.horizon_s)
        if drain:
            eng = self.engine

            def done() -> bool:  # checked after every event: Cluster.drained() inlined
                return (cl.arrivals_done and cl.in_system == 0 and cl.pending is None) or eng.now > limit

            eng.run_until(done)
            if not cl.drained():
                self.drain_cut_s = limit
            wl = self.scenario.workload
            capped = self.scenario.max_requests is not None and self.recorder.arrived >= self.scenario.max_requests
            end = min(self.scenario.horizon_s, limit)
            if cl.drained() and eng.now < end and (wl.kind != "trace" or wl.loop) and not capped:
                # Drained before the horizon (a light load): the run still spans the horizon
                # (never past max_time_s), as under horizon_policy fail (reserved GPUs are paid,
                # idle power drawn, and every per-second figure divides by the same span).
                eng.run_until(end)
        else:
            self.engine.run_until(limit)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """KPIs so far, charged over max(min(horizon, now), last finish)."""
        # Charged span: the arrival horizon (capped at the clock, for traces shorter than it)
        # or the last completion, whichever is later.
        span = min(self.scenario.horizon_s, self.engine.now)
        dur = max(span, self.recorder.last_finish_s)
        # slo_tokens_per_s is per second of the arrival horizon however the run ended (an env
        # episode ends at its last arrival, a drained run later); a finite trace shorter than
        # the horizon is charged its own span; a looping trace replays up to the horizon, so it
        # is charged the horizon even when its last request finished before it.
        # A request cap (max_requests) that ended the arrivals ends the arrival window at the
        # last arrival, whatever the horizon policy (bounds.episode_workload charges the same).
        wl = self.scenario.workload
        per = self.scenario.horizon_s if wl.kind != "trace" or wl.loop else span
        cap = self.scenario.max_requests
        last = self.recorder.last_arrival_s
        if cap is not None and self.recorder.arrived >= cap and 0.0 < last < per:
            per = last
        out = summarize(self.recorder, self.cluster, dur, horizon_s=per)
        out["horizon_policy"] = "drain" if self.horizon_drained else "fail"
        out["scenario"] = self.scenario.name
        out["seed"] = self.seed
        out["simulated_s"] = round(self.engine.now, 6)
        out["events"] = self.engine.events_processed
        return out
