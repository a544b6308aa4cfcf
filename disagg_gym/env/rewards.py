"""Reward terms: one registry, ``REWARD_TERMS_REGISTRY``. Adding a term touches only this file (and the registry test that lists the terms, tests/env/test_reward_registry.py).

Each term is registered with ``@reward_term(name, default_weight, help)`` on a function of the
step's ``StepOutcome`` returning the term's value over that step. The env's reward is
``reward_scale * sum(weight * term)`` over the terms in registration order, the weights coming
from the ``env.reward`` section of a scenario (``RewardWeights``, one field per term, generated
from this registry, so a new term is a config key at once). The terms are in
``info["reward_terms"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from disagg_gym.config import spec
from disagg_gym.registry import Registry

if TYPE_CHECKING:
    from disagg_gym.env.config import EnvConfig


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one env step produced; every reward term is a function of it.

    Attributes:
        window: The drained ``RewardWindow`` counts (``completed``, ``met_slo``, ``rejected``,
            ``violations``, ``output_tokens``) since the previous step, and the same outcomes
            in ``env.outcome_unit`` (``met_units``, ``violation_units``, ``rejected_units``).
        credit_counts: Under ``reward_mode: per_decision``, the net amount (in
            ``env.outcome_unit``) per credited term (``credited=True``) of request outcomes
            credited this step; ``None`` otherwise.
        cost_usd: Dollars of GPU time elapsed since the previous step.
        energy_j: Joules drawn by the GPUs since the previous step.
        invalid: Whether the step's action was invalid.
        env: The env (for terms that need more of its state; read only, except a term's own).
    """

    window: dict[str, float | int]
    credit_counts: dict[str, float | int] | None
    cost_usd: float
    energy_j: float
    invalid: bool
    env: Any


@dataclass(frozen=True, slots=True)
class RewardTerm:
    """A registered reward term: its value function, default weight and config help.

    ``credited``: counted per request outcome and, under ``reward_mode: per_decision``,
    credited to the routing decision of the request (``info["credit"]``); the reward window
    emits credits under the term's name. ``weight_of`` overrides how the weight is read from
    the env config (default: ``cfg.reward.<name>``).
    """

    name: str
    fn: Callable[[StepOutcome], float]
    default_weight: float
    help: str
    ge: float | None = None
    credited: bool = False
    weight_of: Callable[[EnvConfig], float] | None = None

    def weight(self, cfg: EnvConfig) -> float:
        """The term's weight in the reward under ``cfg``."""
        if self.weight_of is not None:
            return self.weight_of(cfg)
        return float(getattr(cfg.reward, self.name))

    def __reduce__(self) -> Any:
        # A registered term pickles by name: its ``fn``/``weight_of`` may be closures or
        # lambdas, which ``pickle`` refuses, and an env holds its terms (``env._terms``) from
        # its first reset on, so a running env would not pickle otherwise.
        if self.name in REWARD_TERMS_REGISTRY.names() and REWARD_TERMS_REGISTRY.get(self.name) is self:
            return (_registered_term, (self.name,))
        return (RewardTerm, tuple(getattr(self, f.name) for f in dataclasses.fields(self)))


REWARD_TERMS_REGISTRY: Registry[RewardTerm] = Registry("reward term")
_ORDER: list[str] = []  # registration order: the order of the sum (keeps rewards bit-identical)


def reward_term(
    name: str,
    default_weight: float,
    help: str,
    *,
    ge: float | None = None,
    credited: bool = False,
    weight_of: Callable[[EnvConfig], float] | None = None,
) -> Callable[[Callable[[StepOutcome], float]], Callable[[StepOutcome], float]]:
    """Registers the decorated ``fn(outcome) -> float`` as the reward term ``name``."""

    def deco(fn: Callable[[StepOutcome], float]) -> Callable[[StepOutcome], float]:
        if weight_of is None and "RewardWeights" in globals():
            # The config section (one field per term) was generated when this module was
            # imported; a term added later has no field to read its weight from.
            raise ValueError(
                f"reward term {name!r}: registered after disagg_gym.env.rewards was imported, so "
                f"env.reward has no key for its weight; define it in disagg_gym/env/rewards.py, or "
                f"pass weight_of=lambda cfg: <weight>"
            )
        REWARD_TERMS_REGISTRY.register(name)(RewardTerm(name, fn, default_weight, help, ge, credited, weight_of))
        _ORDER.append(name)
        return fn

    return deco


def _registered_term(name: str) -> RewardTerm:
    """The registered term ``name`` (how a ``RewardTerm`` unpickles)."""
    return REWARD_TERMS_REGISTRY.get(name)


def term_names() -> tuple[str, ...]:
    """Registered term names in registration (summation) order."""
    return tuple(_ORDER)


def terms() -> list[RewardTerm]:
    """Registered terms in registration (summation) order."""
    return [REWARD_TERMS_REGISTRY.get(n) for n in _ORDER]


def _counted(term: str, window_key: str) -> Callable[[StepOutcome], float]:
    def fn(o: StepOutcome) -> float:
        if o.credit_counts is not None:
            return float(o.credit_counts[term])
        return float(o.window[window_key])

    return fn


# ------------------------------------------------------------------ the terms
reward_term("slo_goodput", 1.0, "per request meeting both SLOs (per kilotoken under env.outcome_unit: kilotoken)",
            credited=True)(_counted("slo_goodput", "met_units"))
reward_term("slo_violation", -0.5, "per completed request missing an SLO (or per kilotoken)", credited=True)(
    _counted("slo_violation", "violation_units")
)
reward_term("rejection", -1.0, "per rejected request (or per kilotoken)", credited=True)(
    _counted("rejection", "rejected_units")
)


@reward_term("gpu_cost_usd", 0.0, "per dollar of GPU time")
def _gpu_cost_usd(o: StepOutcome) -> float:
    return float(max(o.cost_usd, 0.0))


@reward_term("energy_kj", 0.0, "per kJ of GPU energy")
def _energy_kj(o: StepOutcome) -> float:
    return float(max(o.energy_j, 0.0) / 1e3)


@reward_term(
    "invalid_action", -1.0,
    "per invalid action, applied with env.invalid_action: penalize (negative: a penalty)",
    weight_of=lambda cfg: cfg.reward.invalid_action if cfg.invalid_action == "penalize" else 0.0,
)
def _invalid_action(o: StepOutcome) -> float:
    return 1.0 if o.invalid else 0.0


@reward_term(
    "load_shaping", 0.0,
    "weight of the potential-based shaping term shaping_gamma*phi(s') - phi(s), "
    "phi = -sum(prefill wait_s^2) - sum(decode pressure^2) (0: off)",
    ge=0,
)
def _load_shaping(o: StepOutcome) -> float:
    return float(o.env.shaping_term())


@reward_term(
    "predicted_credit", 1.0,
    "reward_mode predicted: each routing decision's predicted outcome paid at dispatch, taken back "
    "when its true outcome is credited (potential-based: sums to 0 over an episode; 0 in other modes)",
    ge=0,
)
def _predicted_credit(o: StepOutcome) -> float:
    return float(o.env.advance_term())


# ------------------------------------------------------------------ weights (config section)
def _weights_class() -> type:
    fields = [
        (t.name, float, dataclasses.field(default=t.default_weight, metadata=spec(t.help, ge=t.ge)))
        for t in terms()
    ]
    cls = dataclasses.make_dataclass("RewardWeights", fields, frozen=True, slots=True)
    cls.__module__ = __name__  # pickling finds it here
    cls.__doc__ = """Weights of the named reward terms; reward = sum(weight * term) over a step.

    One field per registered reward term (``disagg_gym.env.rewards``), with its default weight.

    ``load_shaping`` is potential-based (Ng, Harada & Russell, 1999): it adds an immediate
    signal for each routing decision (a request joining a long queue lowers the potential at
    once) and, with ``env.shaping_gamma`` equal to the learner's discount, leaves the optimal
    policy unchanged.

    Terms per step: ``slo_goodput`` requests completed within both SLOs; ``slo_violation``
    requests completed outside an SLO; ``rejection`` requests rejected (these three count
    kilotokens of prompt + output instead of requests under ``env.outcome_unit: kilotoken``,
    the unit of ``slo_tokens_per_s``); ``gpu_cost_usd`` dollars of
    GPU time elapsed; ``energy_kj`` kilojoules drawn by the GPUs; ``invalid_action`` 1 if the
    action was invalid (fallback used). The ``invalid_action`` weight applies only under
    ``env.invalid_action: penalize`` (the default).
    """
    return cls


RewardWeights: Any = _weights_class()


def weighted_sum(scale: float, weights: Sequence[float], values: Sequence[float]) -> float:
    """``scale * (w0 * v0 + w1 * v1 + ...)`` summed left to right (the reward of a step)."""
    total: float | None = None
    for w, v in zip(weights, values):
        p = w * v
        total = p if total is None else total + p
    return scale * (total if total is not None else 0.0)


def reward(cfg: EnvConfig, values: dict[str, float]) -> float:
    """The reward of a step from its term values, under ``cfg``'s weights and scale."""
    ts = terms()
    return weighted_sum(cfg.reward_scale, [t.weight(cfg) for t in ts], [values[t.name] for t in ts])
