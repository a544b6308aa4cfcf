"""DisaggServingEnv: the Gymnasium adapter over the simulator (decision points -> steps)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ConductorRouter
from disagg_gym.env.reward_window import RewardWindow, outcome_weight
from disagg_gym.config import from_dict, to_dict
from disagg_gym.env import rewards
from disagg_gym.env.config import REWARD_TERMS, EnvConfig, check_env_options
from disagg_gym.env.make import config_tag, custom_env_id, scenario_data
from disagg_gym.env.observation import CACHE_FEATURES, GLOBAL_FEATURES, INSTANCE_FEATURES, ObservationBuilder, cache_features
from disagg_gym.env.options import check_reset_options
from disagg_gym.env.potential import load_potential
from disagg_gym.generator import Dist, LayoutError, ScenarioGenerator, find_dists, substitute
from disagg_gym.rng import RngStreams
from disagg_gym.scenario import ScenarioConfig
from disagg_gym.simulation import Simulation, make_router, workload_source
from disagg_gym.types import Role

PRIO_HORIZON = 50


class DisaggServingEnv(gym.Env[np.ndarray, np.ndarray]):
    """Disaggregated LLM serving: route requests and/or size prefill/decode pools.

    ## Description
    A discrete-event simulation of an LLM serving cluster whose prefill and decode phases run
    on separate (possibly heterogeneous) instances, with KV-cache transfers between them over
    the interconnect tier the topology gives. Each ``step`` applies one decision and advances
    the simulator to the next decision point (event-driven steps).

    Tasks (``task`` in the scenario):
    * ``route`` — one decision per arriving request: a prefill and a decode instance.
    * ``allocate`` — every ``control_interval_s``: how many instances of each switchable GPU
      type serve prefill (the rest decode); role flips drain and pay ``switch_delay_s``.
      Routing inside uses the scenario's built-in router.
    * ``joint`` — both; the observation's decision flags say which kind of step it is.

    ## Action Space
    ``MultiDiscrete``: route → ``[N + 1, N]`` (prefill index, decode index; the decode index
    is ignored when the prefill instance is colocated; prefill index ``N`` rejects the request
    (admission control), present unless ``env.allow_reject: false``); allocate → ``[n_g + 1 for each GPU type g]``
    (prefill count per type); joint → the concatenation. ``action_masks()`` returns the
    concatenated per-dimension boolean masks (sb3-contrib's contract). Dimensions that do not
    apply to the current step have exactly one valid value (a no-op). An invalid action (masked
    value, out of range, wrong shape, NaN) is replaced by the fallback router's choice (route)
    or the current pool sizes (allocate) and ``info["invalid_action"] = True``; with
    ``env.invalid_action: penalize`` (default) the step's reward also gets
    ``env.reward.invalid_action`` (default -1), ``fallback`` adds no penalty, ``raise`` raises
    ``ValueError`` before changing anything. ``episode_kpis["invalid_actions"]`` counts them.

    ## Observation Space
    ``Box(float32)`` with finite bounds documented in ``disagg_gym.env.observation`` and
    ``docs/envs.md``: per-instance queue, predicted wait, batch, KV memory, backlog, speed and
    link load; the pending request; decision flags; recent SLO attainment, rejections, time
    features, arrival rate; prefill share per GPU type; in scenarios with prefix caching
    (``observation.cache_features``), per instance the pending request's blocks held in HBM,
    host DRAM, SSD and the shared pool, and cache occupancy. ``obs_mode: dict`` gives a flat
    ``Dict``; ``obs_mode: padded`` (route) pads the instance rows to ``max_instances`` with a
    ``valid`` column (rows also hold the cache features where the config has them; width
    ``row_features``) and masks the padded action slots, so one policy fits any cluster size;
    with ``max_instances`` set, a scenario generator may draw the instance count per reset.

    ## Rewards
    A weighted sum of named terms accumulated since the previous step (``env.reward`` weights):
    ``slo_goodput``, ``slo_violation``, ``rejection``, ``gpu_cost_usd``, ``energy_kj``,
    ``invalid_action``, ``load_shaping``. The terms are in ``info["reward_terms"]``. With
    ``reward_mode: per_decision`` the first three credit each request's outcome to the
    decision that routed it (``info["credit"]``: decision index as a string -> reward), delivered at its
    first token (TTFT known), at once for a rejection, corrected at completion on a TPOT miss.

    ## Starting State
    An empty cluster at t = 0 with the configured roles; arrivals from the workload seed.
    With ``env.warm_start_s`` the simulator first runs that long under the fallback router
    (no decisions; the horizon is extended by it), so step 0 sees a loaded cluster.

    ## Episode End
    ``truncated`` when the simulated horizon (or ``max_episode_requests``) is reached;
    ``terminated`` only when a finite trace has been fully replayed and drained. The simulator
    summary (KPIs) is in ``info["episode_kpis"]`` on the last step. Requests in flight at the
    horizon follow the scenario's ``horizon_policy``: ``fail`` (the env's default, ``auto``)
    counts them as failures (``episode_kpis["unfinished"]``); ``drain`` runs them to completion
    before the last step returns (no new arrivals or decisions; their reward is in that step).

    ## Arguments
    ``config``: a standard config name, YAML path or ``ScenarioConfig`` (used as given), or a
    mapping deep-merged over ``base_config`` (what a registered id passes; default
    ``small-route``); ``variant``: a key of the config's ``variants`` section; ``overrides``:
    dotted keys and/or nested mappings, deep-merged; flat keys ``horizon_s``, ``rate_per_s``,
    ``max_episode_requests``, ``obs_mode``, ``control_interval_s``, ``warm_start_s``;
    ``render_mode``: ``"ansi"`` or ``"rgb_array"``. Values may be distributions, sampled per
    reset (``disagg_gym.generator``; the draw is in ``info["scenario"]``). A config that differs
    from ``base_config``'s gets ``spec.id`` ``disagg/<Name>-custom-<hash>-v<N>``.
    ``reset(options={"workload_seed": int, "trace_window": (start_s, end_s)})``: the workload seed
    fixes the exogenous arrivals and the sampled scenario (defaults to the reset seed), so
    different policies can be compared on identical input.

    ## Version History
    * v3 of LargeJoint (432 req/s instead of 300; issue #15 item 5: v2 was degenerate, its
      best tuned fixed split at 98 % of the bound): the workload changed; the simulator,
      spaces and reward are unchanged.
    * v2 of MooncakeCacheRoute, MultiturnCacheRoute and RagPoolRoute (issue #15 item 3: on v1's
      request goodput a learned router gained by rejecting token-heavy requests): primary metric
      ``slo_tokens_per_s`` and ``env.outcome_unit: kilotoken`` (the reward counts kilotokens).
      The simulation and spaces are unchanged.
    * v4 of HeteroAllocate (a length mix flipping from code completion to chat at 300 s, a
      constant 190 req/s over 600 s instead of a diurnal 168 req/s of chat over 900 s) (issue
      #15 item 5: v3 was degenerate once its fixed split was tuned): the workload and horizon
      changed; the simulator, spaces and reward are unchanged.
    * v3 of HeteroAllocate (168 req/s) and EnergyAllocate (a length mix flipping from code
      completion to chat at 300 s, 88 req/s) (issue #15 item 5: v2 was degenerate): the
      workloads changed; the simulator, spaces and reward are unchanged.
    * v3 of ColocatedBaseline and MooncakeRdmaRoute, v1 of the three prefix-cache configs, and
      the v3 route ids of issue #15 (SmallRoute, HeteroRoute, PcieRoute, HybridCostRoute) and
      its new v0 ids (issue #16): ``env.reward_mode: predicted`` by default (``per_decision``
      plus each routing decision paid its predicted outcome at once and taken back when the
      true outcome is credited; an episode's return is unchanged). The simulation is unchanged.
    * (no id bump; options only) issue #16 item 4: with ``obs_mode: padded`` and
      ``max_instances`` a generator may sample instance counts per reset
      (``info["scenario"]["instances"]``); issue #14: padded rows carry the cache features on
      configs that have them (no standard id uses ``obs_mode: padded``).
    * v2 (route configs; issue #16): ``env.reward_mode: per_decision`` (each request's outcome
      credited to the decision that routed it, delivered at its first token or rejection) and
      ``wait_norm_s`` O(1) by default. The simulation is unchanged. New options on every
      config: ``obs_mode: padded`` + ``max_instances`` (size-invariant, route tasks), the
      ``load_shaping`` reward term.
    * issue #14 adds prefix caching: HBM prefix caches by default for workloads with block
      hashes (no standard config before MooncakeCacheRoute-v0, MultiturnCacheRoute-v0 and
      RagPoolRoute-v0 has any, so their dynamics and observations are unchanged).
    * core v2 also makes invalid actions visible (issue #16): penalized by default.
    * core v2 (every config: v1 for route configs, v2 for EnergyAllocate, HeteroAllocate,
      LargeJoint; issue #13): KV transfers are max-min fair over sender egress, receiver ingress
      and WAN ports with a per-transfer ``min(tp)`` cap; KV memory grows block by block during
      decode (admission uses the prompt only; a full pool preempts the youngest requests);
      draining instances hand queued work back; layer-wise overlap only when the transfer starts
      at the request's own prefill end; one energy/cost meter for rewards and KPIs; allocation
      actions inside the mask are applied exactly. Old ids raise gymnasium's ``DeprecatedEnv``
      naming the new id.
    * v1 (EnergyAllocate, HeteroAllocate, LargeJoint): repeated allocation actions no longer
      flip extra instances (a stale role-count cache, refilled by the router between control
      steps, under-counted prefill instances). Route-only configs are unchanged (v0).
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _spec: EnvSpec | None = None
    custom_tag: str | None = None

    @property  # type: ignore[override]
    def spec(self) -> EnvSpec | None:
        """The ``EnvSpec`` ``gym.make`` set; a custom config under a standard id gets its own id."""
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None and self.custom_tag is not None:
            value = replace(value, id=custom_env_id(value.id, self.custom_tag))
        self._spec = value

    def __init__(
        self,
        config: str | Mapping[str, Any] | ScenarioConfig | None = None,
        render_mode: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        base_config: str | None = None,
        variant: str | None = None,
        horizon_s: float | None = None,
        rate_per_s: float | None = None,
        max_episode_requests: int | None = None,
        obs_mode: str | None = None,
        control_interval_s: float | None = None,
        warm_start_s: float | Mapping[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} (got {render_mode!r})")
        self.render_mode = render_mode
        flat = {
            "horizon_s": horizon_s, "rate_per_s": rate_per_s, "max_episode_requests": max_episode_requests,
            "obs_mode": obs_mode, "control_interval_s": control_interval_s, "warm_start_s": warm_start_s,
            **unknown,
        }
        self.custom_tag: str | None = None
        simple = isinstance(config, ScenarioConfig) and not overrides and variant is None and all(
            v is None for v in flat.values()
        )
        if simple:
            assert isinstance(config, ScenarioConfig)
            data, source = to_dict(config), config.name
            self.generator = ScenarioGenerator(data, partial(_fixed, config), _layout_key, source)
            if base_config is not None:  # compare resolved configs (a ScenarioConfig has every key)
                std_data, std_source = scenario_data(None, base_config)
                if _effective(data, source) != _effective(std_data, std_source):
                    self.custom_tag = config_tag(data)
        else:
            data, source = scenario_data(config, base_config, variant, overrides, flat)
            self.generator = ScenarioGenerator(data, partial(_build, source=source), _layout_key, source)
            if base_config is not None:  # a standard id: a different config gets its own spec.id
                standard, std_source = scenario_data(None, base_config, variant)
                if data != standard and _effective(data, source) != _effective(standard, std_source):
                    self.custom_tag = config_tag(data)
        self.scenario = self.generator.nominal
        self.cfg: EnvConfig = from_dict(EnvConfig, self.scenario.env, source=self.scenario.name, prefix="env")
        given = self.scenario.env if isinstance(self.scenario.env, Mapping) else {}
        check_env_options(self.cfg, given, self.scenario.task, self.scenario.name)
        self.task = self.scenario.task
        self._spec_cluster = _static_layout(self.scenario)
        n, gpus = self._spec_cluster
        self.n = n
        self.gpus = [g for g, _ in gpus]
        self.gpu_sizes = [c for _, c in gpus]
        dims: list[int] = []
        self.allow_reject = self.cfg.allow_reject
        self.padded = self.cfg.obs_mode == "padded"
        self.slots = n
        """Instance slots of the spaces: ``env.max_instances`` in padded mode (the instance
        count may then vary per episode up to it; ``self.n`` is this episode's), else ``n``."""
        if self.padded:
            # the layout check (_layout_key) has refused max_instances below the instance count
            self.slots = n if self.cfg.max_instances is None else int(self.cfg.max_instances)
        self.cache_obs = cache_features(self.scenario)
        self.row_features = (
            len(ObservationBuilder.padded_row(self.cache_obs)) if self.padded else len(INSTANCE_FEATURES)
        )
        """Features per instance row of the observation (padded mode adds the cache features
        when the config has them, then the ``valid`` column)."""
        m = self.slots
        if self.task in ("route", "joint"):
            dims += [m + 1 if self.allow_reject else m, m]
        if self.task in ("allocate", "joint"):
            dims += [c + 1 for c in self.gpu_sizes]
        self.action_space = spaces.MultiDiscrete(np.asarray(dims, dtype=np.int64))
        low, high = ObservationBuilder.bounds(n, len(self.gpus), self.cache_obs)
        box = spaces.Box(low=low, high=high, dtype=np.float32)
        self._box = box
        if self.padded:
            plow, phigh = ObservationBuilder.padded_bounds(self.slots, self.cache_obs)
            self.observation_space = spaces.Box(low=plow, high=phigh, dtype=np.float32)
        elif self.cfg.obs_mode == "dict":
            nf = 10
            i = n * nf
            head = i + 6 + len(GLOBAL_FEATURES) + len(self.gpus)
            parts = {
                "instances": spaces.Box(low[:i].reshape(n, nf), high[:i].reshape(n, nf), dtype=np.float32),
                "request": spaces.Box(low[i:i + 4], high[i:i + 4], dtype=np.float32),
                "decision": spaces.Box(low[i + 4:i + 6], high[i + 4:i + 6], dtype=np.float32),
                "global": spaces.Box(low[i + 6:head], high[i + 6:head], dtype=np.float32),
            }
            if self.cache_obs:
                nc = len(CACHE_FEATURES)
                parts["cache"] = spaces.Box(low[head:].reshape(n, nc), high[head:].reshape(n, nc), dtype=np.float32)
            self.observation_space = spaces.Dict(parts)
        else:
            self.observation_space = box
        self._dims = dims
        self.sim: Simulation | None = None
        self.cluster: Cluster | None = None
        self._last_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        wseed, window = check_reset_options(options, self.scenario.workload.kind)  # issue #17
        if wseed is None:
            wseed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        streams = RngStreams(int(wseed))
        scen, drawn = self.generator.sample(streams.get("scenario"))
        if drawn:  # a generator: this episode's scenario and env options
            self.cfg = from_dict(EnvConfig, scen.env, source=scen.name, prefix="env")
            # GPU names may change; sizes and the instance count only in padded mode (the
            # generator checked that the spaces, self.slots wide, hold every draw)
            n, gpus = _static_layout(scen)
            self.n = n
            self.gpus = [g for g, _ in gpus]
            self.gpu_sizes = [c for _, c in gpus]
        self.scenario = scen
        info_scen: dict[str, Any] = {
            "name": scen.name, "sampled": drawn, "horizon_s": scen.horizon_s, "instances": self.n,
        }
        warm = self.cfg.warm_start_s
        if warm > 0:  # the agent still gets horizon_s of decisions after the warm-up
            scen = replace(scen, horizon_s=scen.horizon_s + warm)
            info_scen["warm_start_s"] = warm
        cap = self.cfg.max_episode_requests
        if cap is not None:
            if warm > 0:  # the cap counts the agent's requests: those after the warm-up
                cap += _arrivals_before(scen, int(wseed), warm, window)
            scen = replace(scen, max_requests=cap)
        # an episode ends when arrivals do on the route task (nothing left to decide), and on
        # every task when the request cap ended them (not when they ran out at the horizon)
        self._arrival_cap = cap
        cost_factory = None
        if self.cfg.cost_perturbation.active:
            cost_factory, factors = _perturbed_costs(scen, self.cfg, streams.get("cost_perturbation"))
            info_scen["cost_factors"] = factors
        external = self.task in ("route", "joint")
        control = self.cfg.control_interval_s if self.task in ("allocate", "joint") else None
        self.window = RewardWindow(self.cfg.outcome_unit, self.cfg.violation_at)
        self.sim = Simulation(
            scen, seed=int(wseed), keep_records=False, external=external, control_interval_s=control,
            use_allocator=self.task == "route", workload_window=tuple(window) if window is not None else None,
            extra_observer=self.window, cost_factory=cost_factory,
        )
        self.cluster = self.sim.cluster
        self.engine = self.sim.engine
        self.recorder = self.sim.recorder
        self.fallback = make_router(self.cfg.fallback_router, self.sim.streams, scen.admission)
        self.obs_builder = ObservationBuilder(self.cluster, self.cfg, scen.horizon_s, _mean_rate(scen), self.cache_obs)
        self._horizon_hit = False
        self._warm_stop = self._warming = False
        self._mask_req: Any = None
        self._mask_cache: tuple[list[bool], list[bool]] = ([], [])
        # (the cluster's routing pools they were built from, prefill mask of the pools, decode
        # mask, the smallest KV capacity among the prefill pool)
        self._mask_tpl: tuple[Any, list[bool], list[bool], int] = (None, [], [], 0)
        self.engine.schedule(scen.horizon_s, self._on_horizon, None, PRIO_HORIZON)
        self._finite = scen.workload.kind == "trace"
        self._slo_ema = 1.0
        self._rej_ema = 0.0
        self._rate_ema = _mean_rate(scen)
        self._steps = 0
        self._invalid_count = 0
        self._done = False
        self._per_decision = self.cfg.reward_mode in ("per_decision", "predicted")
        self._predicted = self.cfg.reward_mode == "predicted"
        self._predictor = ConductorRouter(reject=False)
        self._prepaid: dict[int, float] = {}  # decision index -> predicted credit paid in advance
        self._taken_back = 0.0  # advances taken back at the episode's end (info["advance_taken_back"])
        self._advance_delta = 0.0
        self._terms = rewards.terms()
        self._weights = [t.weight(self.cfg) for t in self._terms]
        self._credited = {t.name: w for t, w in zip(self._terms, self._weights) if t.credited}
        self._credit: dict[int, float] = {}
        if warm > 0:
            self._warm_up(warm)
        self._last_arrivals = self.cluster.arrived
        self._last_t = self.engine.now
        self._episode_start = (self.engine.now, self.cluster.arrived)
        self._energy = self._energy_j()
        self._cost = self.cluster.cost_usd(self.engine.now)
        self._kind = self._advance()
        self.window.drain(self.engine.now)
        self.window.drain_credits()
        self._phi = load_potential(self.cluster) if self.cfg.reward.load_shaping else 0.0
        obs = self._obs()
        if options and options.get("keep_records"):  # per-request records from the first decision on
            self.recorder.keep_from_now()
        return obs, {"decision": self._kind, "sim_time_s": self.engine.now, "scenario": info_scen}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.sim is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("episode has ended; call reset()")
        cl = self.cluster
        assert cl is not None
        invalid = False
        vec = _as_int_vector(action, len(self._dims))
        if vec is None:
            invalid = True
        kind = self._kind
        if self.cfg.invalid_action == "raise":
            why = self._invalid_reason(vec, kind)
            if why is not None:
                raise ValueError(f"invalid action {action!r} at a {kind} decision: {why} (env.invalid_action: raise)")
        if kind == "route":
            req = cl.pending
            assert req is not None
            if self._per_decision:
                self.window.track(req, self._steps)
            choice = None
            if vec is not None and self.allow_reject and vec[0] == self.slots:
                cl.reject(req, "policy")  # admission control: the policy sheds this request
            else:
                if vec is not None:
                    choice = self._decode_route(req, vec)
                if choice is None:
                    invalid = True
                    choice = self._fallback_route(req)
                if choice is None:
                    cl.reject(req, "no_instance")
                else:
                    if self._predicted:
                        self._pay_advance(req, choice[0], choice[1])
                    cl.dispatch(req, choice[0], choice[1])
            if self.task == "joint" and vec is not None and not self._alloc_is_noop(vec[2:]):
                invalid = True
        elif kind == "control":
            off = 2 if self.task == "joint" else 0
            if vec is not None:
                if not self._apply_alloc(vec[off:]):
                    invalid = True
        self._steps += 1
        self._kind = self._advance()
        if self._kind == "end" and self.scenario.drains(False):
            self._drain()  # horizon_policy: drain -- in-flight work finishes; its reward lands here
        terms = self._reward_terms(invalid)
        self._invalid_count += invalid
        reward = rewards.weighted_sum(self.cfg.reward_scale, self._weights, list(terms.values()))
        terminated = truncated = False
        info: dict[str, Any] = {
            "invalid_action": invalid, "reward_terms": terms,
            "decision": self._kind,
            "sim_time_s": self.engine.now,
        }
        if self._per_decision:
            # string keys: Gymnasium's vector info wrappers (DictInfoToList, RLlib) need them
            info["credit"] = {str(k): v for k, v in self._credit.items()}
        if self._kind == "end":
            self._done = True
            if self._finite and self.cluster.drained():
                terminated = True
            else:
                truncated = True
            info["episode_kpis"] = self.sim.summary()
            info["episode_kpis"]["invalid_actions"] = self._invalid_count
            if self._predicted:
                # the advances of requests still in flight, taken back in this step's reward
                # (weighted and scaled as the reward is): a learner that bootstraps on
                # truncation adds this back (docs/envs.md, "Truncation and predicted advances")
                info["advance_taken_back"] = (
                    self._taken_back * self.cfg.reward.predicted_credit * self.cfg.reward_scale
                )
        obs = self._obs()
        return obs, float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Concatenated per-dimension masks of the MultiDiscrete action (sb3-contrib contract)."""
        cl = self.cluster
        if cl is None:
            raise gym.error.ResetNeeded("call reset() before action_masks()")
        kind = self._kind
        flat: list[bool] = []
        if self.task in ("route", "joint"):
            pad = [False] * (self.slots - self.n)
            if kind == "route" and cl.pending is not None:
                mp, md = self._route_masks(cl.pending)
                flat += mp
                flat += pad
                if self.allow_reject:
                    flat.append(True)
                flat += md
                flat += pad
            else:  # no-op: index 0 of each route dimension
                np_ = self.slots + (1 if self.allow_reject else 0)
                flat += [True] + [False] * (np_ - 1) + [True] + [False] * (self.slots - 1)
        if self.task in ("allocate", "joint"):
            for m in self._alloc_masks(kind == "control"):
                flat += m
        return np.array(flat, dtype=bool)

    def route_mask_lists(self) -> tuple[list[bool], list[bool]]:
        """(prefill, decode) validity over the N instances for the pending request.

        The route part of :meth:`action_masks` without the padding, the reject value or the
        allocation part, as lists shared with the env's own checks: read them, do not change
        them. Only at a route step (``decision == "route"``).
        """
        cl = self.cluster
        if cl is None:
            raise gym.error.ResetNeeded("call reset() before route_mask_lists()")
        if self._kind != "route" or cl.pending is None:
            raise ValueError(f"route_mask_lists() needs a route step (the pending decision is {self._kind!r})")
        return self._route_masks(cl.pending)

    # ------------------------------------------------------------------ public helpers
    @property
    def decision(self) -> str:
        """Kind of the pending decision: ``"route"``, ``"control"`` or ``"end"``."""
        return self._kind

    @property
    def episode_start(self) -> tuple[float, int]:
        """``(simulated seconds, requests arrived)`` where this episode's decisions began: ``(0.0,
        0)``, or the end of an ``env.warm_start_s`` warm-up. A policy that measures rates over
        the episode starts its clock here (its first decision comes one control interval or one
        arrival later).
        """
        if self.sim is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self._episode_start

    @property
    def workload_seed(self) -> int:
        """Seed of the current episode's exogenous arrivals."""
        if self.sim is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self.sim.seed

    def action_for(
        self,
        route: tuple[int, int] | None = None,
        prefill_counts: dict[str, int] | None = None,
        reject: bool = False,
    ) -> np.ndarray:
        """Encodes a decision as an action of this env's space.

        Dimensions not given are filled with their no-op value (the current pool sizes for the
        allocation part; index 0 for a route part at a control step), so heuristics and
        external schedulers can act through the same interface as learned policies.

        Args:
            route: ``(prefill_idx, decode_idx)`` for a route step.
            prefill_counts: Prefill instances per switchable GPU type for a control step.
            reject: Reject the pending request (admission control; needs ``env.allow_reject``).

        Returns:
            An action in the env's action space; whether it is valid at this decision is for
            :meth:`action_masks` to say (e.g. a prefill count an instance mid-switch cannot reach).

        Raises:
            ValueError: A part this task does not have, or an index or count outside the space.
        """
        cl = self.cluster
        if cl is None:
            raise gym.error.ResetNeeded("call reset() before action_for()")
        routes = self.task in ("route", "joint")
        if route is not None:
            if not routes:
                raise ValueError(f"route={route!r}: the {self.task} task has no route part")
            ok = isinstance(route, (tuple, list)) and len(route) == 2 and all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < self.slots for i in route)
            if not ok:
                raise ValueError(f"route must be (prefill_idx, decode_idx), each in 0..{self.slots - 1} (got {route!r})")
        if prefill_counts and self.task == "route":
            raise ValueError(f"prefill_counts={prefill_counts!r}: the route task has no allocation part")
        if reject and not routes:
            raise ValueError(f"reject=True: the {self.task} task has no route part")
        if reject and route is not None:
            raise ValueError(f"give route={route!r} or reject=True, not both")
        out: list[int] = []
        if routes:
            if reject:
                if not self.allow_reject:
                    raise ValueError("reject=True needs env.allow_reject: true")
                out += [self.slots, 0]
            else:
                out += list(route) if route is not None else [0, 0]
        if self.task in ("allocate", "joint"):
            cur = {g: cl.role_counts(g)[0] for g in self.gpus}
            if prefill_counts:
                unknown = set(prefill_counts) - set(cur)
                if unknown:
                    raise ValueError(f"unknown GPU type(s) {sorted(unknown)}; switchable: {self.gpus}")
                for g, v in prefill_counts.items():
                    size = self.gpu_sizes[self.gpus.index(g)]
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= size:
                        raise ValueError(f"prefill_counts[{g!r}] must be an integer in 0..{size} (got {v!r})")
                cur.update(prefill_counts)
            out += [cur[g] for g in self.gpus]
        return np.asarray(out, dtype=np.int64)

    def render(self) -> Any:
        from disagg_gym.env.render import render_ansi, render_rgb

        if self.cluster is None or self.render_mode is None:
            return None
        if self.render_mode == "ansi":
            return render_ansi(self)
        return render_rgb(self)

    # ------------------------------------------------------------------ decisions
    def _on_horizon(self, _: Any) -> None:
        self._horizon_hit = True

    def _on_warm_end(self, _: Any) -> None:
        self._warm_stop = self._warming

    def _warm_up(self, until_s: float) -> None:
        """Runs ``until_s`` simulated seconds with no decisions: the fallback router routes,
        the pools stay as they are. Its rewards are discarded (the episode starts after it).
        """
        self.engine.schedule(until_s, self._on_warm_end, None, PRIO_HORIZON)
        cl = self.cluster
        self._warming = True
        while True:
            kind = self._advance()
            if kind == "route":
                req = cl.pending
                choice = self._fallback_route(req)
                if choice is None:
                    cl.reject(req, "no_instance")
                else:
                    cl.dispatch(req, choice[0], choice[1])
            elif kind != "control":  # 'warm' (done) or 'end'
                break
        self._warming = False
        self._warm_stop = False
        self.window.drain(self.engine.now)

    def _drain(self) -> None:
        """No new decisions: runs the simulator until every admitted request finished.

        At most 10x the horizon of simulated time; anything left is ``unfinished`` in the KPIs.
        """
        cl, eng = self.cluster, self.engine
        limit = self.scenario.horizon_s * 10
        while True:
            eng.run_until(lambda: cl.drained() or cl.pending is not None or eng.now > limit)
            req = cl.pending
            if req is None:
                break
            # An arrival stamped at the horizon itself: the fallback router places it.
            choice = self._fallback_route(req)
            if choice is None:
                cl.reject(req, "no_instance")
            else:
                cl.dispatch(req, choice[0], choice[1])
        cl.take_control_due()  # a tick due now has nothing left to control
        self.sim.horizon_drained = True

    def _advance(self) -> str:
        """Runs the simulator to the next decision point; returns 'route', 'control' or 'end'."""
        cl = self.cluster
        eng = self.engine
        route_task = self.task in ("route", "joint")
        control_task = self.task in ("allocate", "joint")
        finite = self._finite
        route_only = self.task == "route"
        cap = self._arrival_cap

        def stop() -> bool:
            return (
                cl.pending is not None or cl.control_due or self._horizon_hit or self._warm_stop
                or (cl.arrivals_done and (route_only or (cap is not None and cl.arrived >= cap)))
                or (finite and cl.drained())
            )

        while True:
            eng.run_until(stop)
            if self._warm_stop:
                self._warm_stop = False
                return "warm"
            if cl.pending is not None:
                req = cl.pending
                if not any(self._route_masks(req)[0]):
                    cl.reject(req, "too_large")
                    continue
                if route_task:
                    return "route"
            if cl.take_control_due():
                if control_task and not self._horizon_hit:
                    return "control"
                continue
            return "end"

    def _route_masks(self, req: Any) -> tuple[list[bool], list[bool]]:
        """(prefill mask, decode mask) as lists, cached for the pending request.

        Prefill: instances in service serving prefill whose KV memory can ever hold the request
        (``Cluster.kv_tokens_to_serve``: a colocated instance needs the decode's block more); decode:
        decode instances in service (all ``True`` on an all-colocated cluster: the index is
        ignored). Both come from the cluster's routing pools (``Cluster.pools``: in service, by
        role), rebuilt only when those change; the lists may be shared between requests.
        """
        if self._mask_req is req:
            return self._mask_cache
        cl = self.cluster
        pools = cl.pools()
        if pools is not self._mask_tpl[0]:
            ps, ds = pools
            n = self.n
            mp_all = [False] * n
            for inst in ps:
                mp_all[inst.idx] = True
            if ds:
                md = [False] * n
                for inst in ds:
                    md[inst.idx] = True
            else:  # all-colocated cluster: the decode index is ignored
                md = [True] * n
            self._mask_tpl = (pools, mp_all, md, min((inst.kv_cap for inst in ps), default=0))
        _, mp_all, md, smallest = self._mask_tpl
        need = cl.kv_tokens_to_serve(req)  # a colocated instance's need (a prefill one's is a block less)
        if need <= smallest:
            mp = mp_all
        else:
            mp = [False] * self.n
            prefill_need = cl.kv_tokens_to_serve(req, decode=False)
            for inst in pools[0]:
                if (need if inst.role is Role.COLOCATED else prefill_need) <= inst.kv_cap:
                    mp[inst.idx] = True
        self._mask_req = req
        self._mask_cache = (mp, md)
        return mp, md

    def _decode_route(self, req: Any, vec: list[int]) -> tuple[int, int] | None:
        p, d = vec[0], vec[1]
        if not (0 <= p < self.n and 0 <= d < self.n):
            return None
        mp, md = self._route_masks(req)
        if not mp[p]:
            return None
        if self.cluster.instances[p].role is Role.COLOCATED:
            return p, p
        if not md[d]:
            return None
        return p, d

    def _fallback_route(self, req: Any) -> tuple[int, int] | None:
        return self.fallback.route(self.cluster, req)

    def _alloc_masks(self, active: bool) -> list[list[bool]]:
        """Valid prefill counts per switchable GPU type; not ``active`` (a route step of the
        joint task): only each type's current count (the no-op), built without numpy.
        """
        cl = self.cluster
        if not active:
            out = []
            for g, size in zip(self.gpus, self.gpu_sizes):
                m = [False] * (size + 1)
                m[cl.role_counts(g)[0]] = True
                out.append(m)
            return out
        counts = [cl.role_counts(g) for g in self.gpus]
        tot_p = sum(p for p, _ in counts)
        tot = sum(p + d for p, d in counts)
        n_coloc = sum(1 for i in cl.instances if i.role is Role.COLOCATED)
        out = []
        bounds = alloc_count_bounds(self.gpu_sizes, n_coloc)
        for k, (g, (p, d), size) in enumerate(zip(self.gpus, counts, self.gpu_sizes)):
            m = np.zeros(size + 1, dtype=bool)
            if bounds is not None:
                m[bounds[k][0]:bounds[k][1] + 1] = True
                lo, hi = cl.prefill_count_reachable(g)  # instances mid-switch cannot be re-targeted
                m[:lo] = False
                m[hi + 1:] = False
                if not m.any():
                    m[p] = True
            else:
                others_p = tot_p - p
                others_d = (tot - tot_p) - d
                for v in range(size + 1):
                    m[v] = others_p + v >= 1 and others_d + (size - v) >= 1
                if not m.any():
                    m[p] = True
            out.append(m.tolist())
        return out

    def _invalid_reason(self, vec: list[int] | None, kind: str) -> str | None:
        """Why ``vec`` is invalid at this decision, or ``None`` if it is valid (checked without
        changing anything).
        """
        dims = self._dims
        if vec is None:
            return f"expected {len(dims)} integers, one per dimension of {self.action_space}"
        out = [f"{v} in dimension {i} (size {d})" for i, (v, d) in enumerate(zip(vec, dims)) if not 0 <= v < d]
        if out:
            return f"outside the action space: {', '.join(out)}"
        cl = self.cluster
        if kind == "route":
            req = cl.pending
            if not (self.allow_reject and vec[0] == self.slots) and self._decode_route(req, vec) is None:
                return "masked out (action_masks() says which values this request may take)"
            if self.task == "joint" and not self._alloc_is_noop(vec[2:]):
                return "a route step's allocation part must repeat the current prefill counts"
            return None
        if kind == "control":
            off = 2 if self.task == "joint" else 0
            masks = self._alloc_masks(True)
            if any(not m[v] for v, m in zip(vec[off:], masks)):
                return "masked out (action_masks() says which prefill counts are reachable now)"
        return None

    def _alloc_is_noop(self, vals: list[int]) -> bool:
        cl = self.cluster
        return all(v == cl.role_counts(g)[0] for g, v in zip(self.gpus, vals))

    def _apply_alloc(self, vals: list[int]) -> bool:
        masks = self._alloc_masks(True)
        cl = self.cluster
        ok = True
        for g, v, m in zip(self.gpus, vals, masks):
            if not (0 <= v < len(m)) or not m[v]:
                ok = False
                continue
            cl.set_prefill_count(g, v)
        return ok

    # ------------------------------------------------------------------ reward / obs
    def _energy_j(self) -> float:
        return self.cluster.energy_j(self.engine.now)

    def _reward_terms(self, invalid: bool) -> dict[str, float]:
        win = self.window.drain(self.engine.now)
        now = self.engine.now
        dt = now - self._last_t
        self._last_t = now
        e = self._energy_j()
        de = e - self._energy
        self._energy = e
        c = self.cluster.cost_usd(now)
        dc = c - self._cost
        self._cost = c
        fin = win["completed"] + win["rejected"]
        if fin:
            a = min(1.0, self.cfg.slo_ema * fin)
            self._slo_ema += a * (win["met_slo"] / fin - self._slo_ema)
            self._rej_ema += a * (win["rejected"] / fin - self._rej_ema)
        if dt > 0:
            arrivals = self.cluster.arrived - self._last_arrivals
            self._last_arrivals = self.cluster.arrived
            a = 1.0 - math.exp(-dt / 30.0)
            self._rate_ema += a * (arrivals / dt - self._rate_ema)
        credit_counts: dict[str, float | int] | None = None
        if self._per_decision:
            weight = self._credited
            credit_counts = dict.fromkeys(weight, 0)
            credit: dict[int, float] = {}
            advance = self._prepaid
            for decision, term, sign, _tokens in self.window.drain_credits():
                if sign > 0 and decision in advance:
                    self._advance_delta -= advance.pop(decision)
                if sign:
                    credit_counts[term] += sign
                    credit[decision] = credit.get(decision, 0.0) + self.cfg.reward_scale * weight[term] * sign
            self._credit = credit
        outcome = rewards.StepOutcome(win, credit_counts, dc, de, invalid, self)
        return {t.name: t.fn(outcome) for t in self._terms}

    def _pay_advance(self, req: Any, p: int, d: int) -> None:
        """``reward_mode: predicted``: credits this decision now with its predicted outcome.

        The predictions are the Conductor's (``disagg_gym.cluster.policies.ConductorRouter``):
        TTFT = queue wait + compute of the tokens ``p`` lacks over its cached context + loads
        from lower cache tiers; TPOT = ``d``'s decode iteration once it joins, stretched by
        ``max(1, (decode load + 1) / max_batch)`` when sequences wait for a batch slot. With
        ``q = sigma((1 - TTFT / SLO_TTFT) / 0.1) * sigma((1 - TPOT / SLO_TPOT) / 0.1)`` the
        advance is ``(w_violation + (w_goodput - w_violation) q) * u``, with ``u`` the request's
        ``env.outcome_unit`` weight (1, or its kilotokens), taken back when the true
        outcome is credited (potential-based: the episode's return is unchanged).
        """
        cl = self.cluster
        pred = self._predictor
        ttft = pred.ttft_s(cl, cl.instances[p], req, cl.engine.now)
        tpot = pred.tpot_s(cl.instances[d], req)
        q = _sigmoid((1.0 - ttft / req.slo_ttft_s) / 0.1) * _sigmoid((1.0 - tpot / req.slo_tpot_s) / 0.1)
        w = self._credited
        v = (w["slo_violation"] + (w["slo_goodput"] - w["slo_violation"]) * q) * outcome_weight(req, self.cfg.outcome_unit)
        self._prepaid[self._steps] = v
        self._advance_delta += v

    def advance_term(self) -> float:
        """``reward_mode: predicted``: this step's advances minus take-backs (0 otherwise).

        Called once per step after the step's credits were drained; at the episode's end
        every advance not yet settled is taken back (the potential of the end state is 0).
        """
        if not self._predicted:
            return 0.0
        if self._kind == "end":
            self._taken_back = sum(self._prepaid.values())
            self._advance_delta -= self._taken_back
            self._prepaid.clear()
        f, self._advance_delta = self._advance_delta, 0.0
        return f

    def shaping_term(self) -> float:
        """``shaping_gamma * phi(s') - phi(s)`` (0 when the weight is 0; ``phi(end) = 0``)."""
        if not self.cfg.reward.load_shaping:
            return 0.0
        phi = 0.0 if self._kind == "end" else load_potential(self.cluster)
        f = self.cfg.shaping_gamma * phi - self._phi
        self._phi = phi
        return float(f)

    def _obs(self) -> Any:
        cl = self.cluster
        kind = self._kind
        req = cl.pending if kind == "route" else None
        flat = self.obs_builder.build(req, kind == "route", kind == "control", self._slo_ema, self._rej_ema, self._rate_ema)
        self._last_obs = flat
        if self.padded:
            return self.obs_builder.pad(flat, self.slots)
        if self.cfg.obs_mode == "dict":
            return self.obs_builder.split(flat)
        return flat


def alloc_count_bounds(gpu_sizes: list[int], n_colocated: int) -> list[tuple[int, int]] | None:
    """Per switchable GPU type, the lowest and highest prefill count the allocation mask allows
    (when no instance is mid-switch), or ``None`` where that depends on the other types' current
    counts (every type has one instance and none is colocated).

    Masks are per GPU type (MultiDiscrete), so every combination they allow must be valid as a
    whole and applied exactly (issue #17): without colocated instances a type with >= 2
    instances keeps at least one in each role, so ``(1, size - 1)``; then single-instance types
    (and every type of a cluster with colocated instances) are free, ``(0, size)``.
    """
    if n_colocated == 0 and not any(size >= 2 for size in gpu_sizes):
        return None
    return [(1, size - 1) if size >= 2 and n_colocated == 0 else (0, size) for size in gpu_sizes]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -50 else 0.0


def _as_int_vector(action: Any, n: int) -> list[int] | None:
    """Action -> list of ``n`` ints, or ``None`` if it has the wrong shape or non-finite values."""
    if type(action) is np.ndarray and action.dtype.kind in "iu" and action.shape == (n,):
        return action.tolist()  # fast path: what policies normally send
    try:
        arr = np.asarray(action)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) and not (n == 1 and arr.shape == ()):
        return None
    if arr.dtype.kind not in "iuf" and arr.dtype != bool:
        return None
    flat = arr.reshape(-1)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)):
            return None
    if np.any(np.abs(flat.astype(np.float64)) > 2**31):
        return None
    return [int(v) for v in flat]


def _arrivals_before(scen: ScenarioConfig, seed: int, t: float, window: Any) -> int:
    """Requests of the episode's workload arriving up to ``t`` (the workload is exogenous: a
    ``Simulation(scen, seed)`` replays the same arrivals whatever the policy does).
    """
    # arrivals at exactly t are routed by the warm-up (they fire before its end event), so
    # they count: the source keeps arrivals before its horizon, the next float after t
    src = workload_source(scen.workload, RngStreams(seed), float(np.nextafter(t, math.inf)), None, window)
    n = 0
    while (ch := src.next_chunk()) is not None and len(ch.arrival_s):
        n += len(ch.arrival_s)
    return n


def _mean_rate(scen: ScenarioConfig) -> float:
    wl = scen.workload
    return float(getattr(wl, "rate_per_s", 1.0) or 1.0)


def _perturbed_costs(
    scen: ScenarioConfig, cfg: EnvConfig, rng: np.random.Generator
) -> tuple[Any, dict[str, dict[str, float]]]:
    """A ``(gpu, tp) -> cost`` factory with per-GPU-type factors drawn from ``rng``, and the factors."""
    from disagg_gym.hardware.perturbed import PerturbedCost
    from disagg_gym.hardware.select import build_cost

    cp = cfg.cost_perturbation
    cost_models: dict[tuple[str, int], str] = {}
    for g in scen.cluster.groups:
        cost_models.setdefault((g.gpu, g.tp), g.cost_model)
    factors: dict[str, dict[str, float]] = {}
    for gpu in sorted({g.gpu for g in scen.cluster.groups}):  # sorted: draws independent of order
        fp = 1.0 + float(rng.uniform(-cp.prefill_time_frac, cp.prefill_time_frac))
        fd = 1.0 + float(rng.uniform(-cp.decode_time_frac, cp.decode_time_frac))
        factors[gpu] = {"prefill": fp, "decode": fd}
    model = scen.cluster.model

    def factory(gpu: str, tp: int) -> Any:
        f = factors[gpu]
        return PerturbedCost(build_cost(gpu, model, tp, cost_models[(gpu, tp)]), f["prefill"], f["decode"])

    return factory, factors


def _fixed(scen: ScenarioConfig, _: Any) -> ScenarioConfig:
    return scen


def _build(data: Any, source: str) -> ScenarioConfig:
    """Plain data -> a checked scenario whose ``env`` section is checked too."""
    scen = from_dict(ScenarioConfig, data, source=source)
    from_dict(EnvConfig, scen.env, source=source, prefix="env")
    return scen


def _effective(data: Any, source: str) -> tuple[dict[str, Any], tuple[Dist, ...]]:
    """What a scenario's plain data means, for comparing two of them: every key resolved with
    its default (the ``env`` section too) and its distribution nodes. A key set to its default
    value (``obs_mode="box"``, ``env.allow_reject: false``) changes nothing here.
    """
    dists = tuple(find_dists(data, source))
    scen = _build(substitute(data, {d.key: d.nominal() for d in dists}), source)
    resolved = to_dict(scen)
    resolved["env"] = to_dict(from_dict(EnvConfig, scen.env, source=source, prefix="env"))
    return resolved, dists


def _layout_key(scen: ScenarioConfig) -> dict[str, Any]:
    """What fixes the spaces (every sampled scenario must give the same): the instance count,
    the switchable instances per GPU type and whether the observation has cache features; with
    ``env.obs_mode: padded`` the slot count replaces the first two, so with ``env.max_instances``
    set the instance count may vary up to it (issue #16 item 4).

    Raises:
        LayoutError: The cluster has more instances than ``env.max_instances``.
    """
    n, gpus = _static_layout(scen)
    cache = cache_features(scen)
    cfg = from_dict(EnvConfig, scen.env, source=scen.name, prefix="env")
    if cfg.obs_mode == "padded":
        slots = n if cfg.max_instances is None else int(cfg.max_instances)
        if n > slots:
            raise LayoutError(f"env.max_instances={slots} is below the cluster's {n} instances")
        return {"slots": slots, "cache_features": cache}
    return {"instances": n, "switchable_per_gpu_type": tuple(c for _, c in gpus), "cache_features": cache}


def _static_layout(scen: ScenarioConfig) -> tuple[int, list[tuple[str, int]]]:
    """(instances, [(gpu, switchable count)]) from the config, without building a cluster."""
    n = 0
    gpus: dict[str, int] = {}
    for g in scen.cluster.groups:
        n += g.count
        if g.role != "colocated":
            gpus[g.gpu] = gpus.get(g.gpu, 0) + g.count
    return n, list(gpus.items())


REWARD_TERM_NAMES = REWARD_TERMS
