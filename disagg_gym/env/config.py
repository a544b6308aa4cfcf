"""Options of the Gymnasium layer (the ``env:`` section of a scenario): reward, observation, episodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from disagg_gym.cluster.admission import split_name
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.config import ConfigError, deep_merge, from_dict, spec
from disagg_gym.errors import UserError
from disagg_gym.generator import at_nominal

from disagg_gym.env.rewards import RewardWeights, term_names

REWARD_TERMS = term_names()
"""Names of the reward terms, in summation order (the registry: ``disagg_gym.env.rewards``)."""


@dataclass(frozen=True, slots=True)
class CostPerturbation:
    """Domain randomisation of the cost model: at each reset every GPU type's prefill and
    decode times are scaled by factors drawn uniformly from ``[1 - frac, 1 + frac]``.

    Off (0) by default. The measured fit errors (docs/calibration.md, llama-3.1-8b) suggest
    ``prefill_time_frac: 0.046`` and ``decode_time_frac: 0.056`` (p90 errors).
    """

    prefill_time_frac: float = field(default=0.0, metadata=spec("half-width of the prefill time factor", ge=0, le=0.25))
    decode_time_frac: float = field(default=0.0, metadata=spec("half-width of the decode time factor", ge=0, le=0.25))

    @property
    def active(self) -> bool:
        """Whether any factor is drawn."""
        return self.prefill_time_frac > 0 or self.decode_time_frac > 0


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Gymnasium-level options of a scenario."""

    reward: RewardWeights = field(default_factory=RewardWeights, metadata=spec("reward weights"))
    reward_mode: Literal["aggregate", "per_decision", "predicted"] = field(
        default="aggregate",
        metadata=spec(
            "aggregate: a step's slo_goodput/slo_violation/rejection terms count every request that "
            "finished since the previous step; per_decision: each routed request's outcome is "
            "credited to the decision that routed it and delivered as soon as it is known "
            "(rejection: that step; TTFT met/missed: at the first token; a TPOT miss corrects it "
            "at completion), with info['credit'] naming the decision; predicted: per_decision, plus "
            "each routing decision is credited at once with its predicted outcome (from the cost "
            "model's TTFT/TPOT prediction at dispatch), taken back when the true outcome is credited "
            "(potential-based: an episode's return equals per_decision's)"
        ),
    )
    outcome_unit: Literal["request", "kilotoken"] = field(
        default="request",
        metadata=spec(
            "how the slo_goodput, slo_violation and rejection terms count a request (in every "
            "reward_mode, predicted advances included): request (1 each) or kilotoken ((prompt + "
            "output tokens) / 1000 each, the unit of the leaderboard's slo_tokens_per_s, so serving "
            "small requests and shedding large ones does not raise the reward)"
        ),
    )
    violation_at: Literal["completion", "ttft_deadline"] = field(
        default="completion",
        metadata=spec(
            "reward_mode aggregate: when a step's slo_violation term counts a request that misses "
            "its SLO: completion (when it finishes; a request still queued at the end of the episode "
            "is never counted), or ttft_deadline (as soon as its TTFT deadline, arrival + TTFT SLO, "
            "passes without a first token, else at completion; a policy that starves the queues is "
            "charged while they grow)"
        ),
    )
    shaping_gamma: float = field(default=0.99, metadata=spec("discount of the load_shaping term", gt=0, le=1))
    reward_scale: float = field(default=1.0, metadata=spec("multiplies the reward", gt=0))
    control_interval_s: float = field(default=10.0, metadata=spec("allocate/joint decision interval", gt=0))
    fallback_router: str = field(default="jsq", metadata=spec(
        "router used for invalid route actions and the warm-up (a composed <router>+<admission> name works too)"))
    invalid_action: Literal["penalize", "fallback", "raise"] = field(
        default="penalize",
        metadata=spec(
            "an action the masks do not allow: penalize (the fallback keeps the simulation going "
            "and the step's reward gets reward.invalid_action), fallback (no penalty), raise (ValueError)"
        ),
    )
    allow_reject: bool = field(
        default=True, metadata=spec("route action has an extra value that rejects the request (admission control)")
    )
    obs_mode: Literal["box", "dict", "padded"] = field(
        default="box",
        metadata=spec(
            "flat Box, flat Dict, or padded (size-invariant: max_instances rows + validity column, route tasks)"
        ),
    )
    max_instances: int | None = field(
        default=None, metadata=spec("obs_mode padded: rows/action slots (default: the cluster's instances)", ge=1)
    )
    max_episode_requests: int | None = field(
        default=None, metadata=spec("end the episode at this many arrivals, counted after any warm-up (default: horizon only)", ge=1)
    )
    queue_norm_tokens: float = field(default=32768.0, metadata=spec("queued tokens at which the feature saturates", gt=0))
    wait_norm_s: float = field(default=10.0, metadata=spec("predicted wait at which the feature saturates", gt=0))
    prompt_norm_tokens: float = field(default=16384.0, metadata=spec("prompt length at which the feature saturates", gt=0))
    slo_ema: float = field(default=0.05, metadata=spec("EMA factor of recent SLO attainment", gt=0, le=1))
    day_period_s: float = field(default=3600.0, metadata=spec("period of the time-of-day features", gt=0))
    warm_start_s: float = field(
        default=0.0,
        metadata=spec(
            "simulated seconds of traffic before the first decision, routed by fallback_router with "
            "the pools unchanged; the horizon is extended by it (may be a distribution)", ge=0,
        ),
    )
    cost_perturbation: CostPerturbation = field(
        default_factory=CostPerturbation, metadata=spec("cost-model domain randomisation (off by default)")
    )


def check_env_sections(scenario: Any) -> None:
    """Checks a scenario's ``env`` section and each variant's, merged over it, as an env built
    from them would (keys, values and :func:`check_env_options`; distribution nodes at their
    nominal values): ``disagg-gym simulate`` runs the simulation alone and would otherwise accept
    settings that fail only once an env is made. (The layout checks of sampled scenarios, which
    need the env's spaces, are left to the env.)

    Raises:
        ConfigError, UserError: one line naming the key.
    """
    def check(env: Any, where: str, task: str) -> None:
        if not isinstance(env, dict):
            raise ConfigError(f"{scenario.name}: key '{where}': expected a mapping (got {env!r})")
        tree = at_nominal({"env": env}, scenario.name)  # nodes are allowed by their key in the whole config
        check_env_options(from_dict(EnvConfig, tree["env"], source=scenario.name, prefix=where), env, task,
                          scenario.name)

    check(scenario.env, "env", scenario.task)
    for name, part in scenario.variants.items():
        if isinstance(part, dict) and "env" in part:
            check(deep_merge(scenario.env, part["env"]), f"variants.{name}.env", part.get("task", scenario.task))


def check_env_options(cfg: EnvConfig, given: Mapping[str, Any], task: str, name: str) -> None:
    """Cross-field checks of an env's options: a bad ``fallback_router``, and settings the env
    would ignore for its task and modes (however they were given: config, overrides, flat
    keywords), refused in one line rather than accepted under a silently different spec.id
    for an identical env. ``given``: the options as written (before defaults).

    Raises:
        UserError: naming the setting.
    """
    try:  # naming the key and the bad router (or admission)
        ROUTERS.get(split_name(cfg.fallback_router)[0])
    except UserError as exc:
        raise UserError(f"{name}: key 'env.fallback_router': {exc}") from None
    if given.get("control_interval_s") is not None and task == "route":
        raise UserError(f"env.control_interval_s applies to allocate and joint tasks ({name} "
                        f"is a route task: it decides at every arrival)")
    if task == "allocate" and cfg.reward_mode != "aggregate":
        raise UserError(f"env.reward_mode {cfg.reward_mode!r} credits routing decisions and an allocate "
                        f"task makes none (its outcome terms would stay 0): use aggregate ({name})")
    if cfg.violation_at != "completion" and cfg.reward_mode != "aggregate":
        raise UserError(f"env.violation_at {cfg.violation_at!r} applies to reward_mode: aggregate (the "
                        f"per-decision modes credit each decision's own outcome) (got reward_mode "
                        f"{cfg.reward_mode!r}; {name})")
    if given.get("max_instances") is not None and cfg.obs_mode != "padded":
        raise UserError(f"env.max_instances applies to obs_mode: padded (got obs_mode {cfg.obs_mode!r})")
    if cfg.obs_mode == "padded" and task != "route":
        raise UserError(f"env.obs_mode: padded needs task: route (got task {task!r})")
