"""Heuristic policies: classic routers and pool-sizing planners behind SB3's ``predict``.

Each heuristic is one class registered in ``disagg_gym_agents.registry.POLICIES``. Router heuristics
(one per router of ``disagg_gym.cluster.policies.ROUTERS``, derived at import: ``round_robin``,
``jsq``, ``p2c``, ``least_finish``, ``kv_aware``, ``length_oracle``, ...) apply to the
``route`` and ``joint`` tasks and keep pool sizes unchanged at control steps; allocator
heuristics (``static_ratio``, ``threshold``) apply to ``allocate`` and ``joint`` and route with
JSQ at route steps; ``random`` (masked uniform) applies everywhere.

The routers delegate to the simulator-level implementations in
``disagg_gym.cluster.policies`` (one definition of each algorithm), reading the cluster through
the env's public ``cluster`` attribute, and encode their choice with ``env.action_for``. Every
action is checked against ``env.action_masks()``, so a heuristic never triggers the env's
invalid-action fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from disagg_gym.cluster.policies import ROUTERS, decode_pressure, prefill_wait_s
from disagg_gym.types import Role
from disagg_gym.errors import UserError
from disagg_gym_agents.base import Policy
from disagg_gym_agents.registry import POLICIES, check_kwargs

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster, Router
    from disagg_gym.workload.request import Request


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (got {seed!r})")
    return int(seed)


class Heuristic(Policy):
    """Base of the heuristics: dispatches on the env's pending decision.

    A new episode is detected from the env (a fresh ``cluster`` after ``reset``), so the same
    object can be reused across episodes. Per-episode randomness comes from
    ``np.random.default_rng([seed, workload_seed])``: an episode's actions depend only on the
    policy seed and that episode's workload seed, not on the order episodes were run in.

    Args:
        env: A disagg-gym env (wrappers allowed).
        seed: Seed of the heuristic's own randomness (non-negative).
    """

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env)
        self.seed = _check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self._cluster: Cluster | None = None
        self._router: Router | None = None

    # ------------------------------------------------------------------ interface
    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Returns the heuristic's action for the env's current decision (see ``Policy``)."""
        base = self.base
        cl = base.cluster
        if cl is None:
            raise gym.error.ResetNeeded("call env.reset() before predict()")
        if cl is not self._cluster:
            self._cluster = cl
            self.rng = np.random.default_rng([self.seed, int(base.sim.seed)])
            self.start_episode(cl)
        kind = base.decision
        if kind == "route" and cl.pending is not None:
            return self.route(cl, cl.pending), state
        if kind == "control":
            return self.control(cl), state
        return base.action_for(), state

    def start_episode(self, cluster: Cluster) -> None:
        """Resets per-episode state (called on the first ``predict`` of each episode)."""
        self._router = self.make_router()

    def make_router(self) -> Router:
        """The simulator-level router used at route steps (JSQ unless overridden)."""
        return ROUTERS.get("jsq")()

    def route(self, cluster: Cluster, req: Request) -> np.ndarray:
        """Action for a route step."""
        assert self._router is not None
        return self.base.action_for(
            route=self.valid_pair(cluster, self._router.route(cluster, req))
        )

    def control(self, cluster: Cluster) -> np.ndarray:
        """Action for a control step: keep the current pool sizes (no-op)."""
        return self.base.action_for()

    # ------------------------------------------------------------------ masks
    def route_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(prefill mask over the N instances, decode mask) of the current step.

        The env's optional admission-control value (prefill index ``N`` = reject) is left out:
        the shipped heuristics always route.
        """
        n = self.base.n
        nvec = self.base.action_space.nvec
        m = self.base.action_masks()
        return m[:n], m[int(nvec[0]) : int(nvec[0]) + n]

    def alloc_masks(self) -> dict[str, np.ndarray]:
        """Valid prefill counts per switchable GPU type at the current step."""
        base = self.base
        m = base.action_masks()
        nvec = base.action_space.nvec
        off = int(nvec[0] + nvec[1]) if base.task == "joint" else 0
        out = {}
        for g, size in zip(base.gpus, base.gpu_sizes):
            out[g] = m[off : off + size + 1]
            off += size + 1
        return out

    def valid_pair(self, cluster: Cluster, choice: tuple[int, int] | None) -> tuple[int, int]:
        """Projects a router's choice onto the action masks.

        The shipped routers only propose valid pairs; this guards against corner cases (a
        prompt too large for one instance's KV memory) by falling back to the lowest valid
        index. A colocated prefill instance ignores the decode index; it is set to a valid one.
        """
        mp, md = self.base.route_mask_lists()
        n = len(mp)
        p, d = choice if choice is not None else (-1, -1)
        if not (0 <= p < n and mp[p]):
            p = mp.index(True) if True in mp else 0
        if cluster.instances[p].role is Role.COLOCATED:
            d = p
        if not (0 <= d < n and md[d]):
            d = md.index(True) if True in md else 0
        return int(p), int(d)

    def clip_counts(self, targets: dict[str, int]) -> dict[str, int]:
        """Moves each target prefill count to the nearest value the mask allows."""
        masks = self.alloc_masks()
        out = {}
        for g, want in targets.items():
            valid = np.flatnonzero(masks[g])
            if valid.size == 0:
                continue
            out[g] = int(valid[np.argmin(np.abs(valid - int(want)))])
        return out


# ====================================================================== any task
@POLICIES.register("random")
class RandomPolicy(Heuristic):
    """Masked uniform: each action dimension uniform over its valid values (all tasks).

    At route steps the env's admission-control value (reject the request) is excluded unless
    ``include_reject=True``: the baseline is a random router, not a random load shedder.

    Args:
        env: A disagg-gym env.
        seed: Seed of the draws (combined with each episode's workload seed).
        include_reject: Also draw the reject value at route steps.
    """

    name = "random"

    def __init__(self, env: gym.Env, seed: int = 0, include_reject: bool = False) -> None:
        super().__init__(env, seed)
        self.include_reject = bool(include_reject)

    def _sample(self, route_step: bool) -> np.ndarray:
        base = self.base
        m = base.action_masks().copy()
        if route_step and not self.include_reject and base.task in ("route", "joint"):
            m[base.n : int(base.action_space.nvec[0])] = False
        out, off = [], 0
        for size in base.action_space.nvec:
            valid = np.flatnonzero(m[off : off + int(size)])
            out.append(int(self.rng.choice(valid)) if valid.size else 0)
            off += int(size)
        return np.asarray(out, dtype=np.int64)

    def route(self, cluster: Cluster, req: Request) -> np.ndarray:
        """Uniform valid (prefill, decode) pair (and no-op pool sizes on joint)."""
        return self._sample(True)

    def control(self, cluster: Cluster) -> np.ndarray:
        """Uniform valid prefill count per GPU type."""
        return self._sample(False)


# ====================================================================== routers
class RouterHeuristic(Heuristic):
    """Routes with the simulator router ``router_name``; keeps pools at control steps.

    One subclass per registered router is derived at import (``derive_router_heuristics``; again after ``--import``):
    adding a router to ``disagg_gym.cluster.policies.ROUTERS`` adds its heuristic agent.
    """

    tasks: ClassVar[tuple[str, ...]] = ("route", "joint")
    router_name: ClassVar[str] = "jsq"

    def __init__(self, env: gym.Env, seed: int = 0, **router_kwargs: Any) -> None:
        """``router_kwargs``: the router's own parameters (``spillover``'s ``alpha``, ...)."""
        super().__init__(env, seed)
        self.router_kwargs = router_kwargs
        check_kwargs(self.name, ROUTERS.get(self.router_name), router_kwargs, skip=("rng",))
        try:
            self.make_router()  # checks the values now, naming the bad one
        except (TypeError, ValueError) as exc:
            raise UserError(f"{self.name}: {exc}") from None

    def make_router(self) -> Router:
        """Builds ``ROUTERS[router_name]``; random ones (``uses_rng``) get the per-episode generator."""
        cls = ROUTERS.get(self.router_name)
        return cls(self.rng, **self.router_kwargs) if cls.uses_rng else cls(**self.router_kwargs)


def derive_router_heuristics() -> None:
    """Registers a ``RouterHeuristic`` for every simulator router without a policy of its name.

    ``random`` keeps the masked-uniform ``RandomPolicy`` (a random agent over the whole action
    space, not only a random router). The policy's doc and ``upper_bound`` come from the router.
    """
    for name in ROUTERS.names():
        if name in POLICIES:
            continue
        router = ROUTERS.get(name)
        doc = " ".join((router.__doc__ or name).split())
        if router.upper_bound:
            doc = f"REFERENCE (an oracle), not a deployable policy and not a bound. {doc}"
        cls = type(
            f"{router.__name__.removesuffix('Router')}Policy",
            (RouterHeuristic,),
            {"__doc__": doc, "__module__": __name__, "name": name, "router_name": name,
             "upper_bound": bool(router.upper_bound)},
        )
        POLICIES.register(name)(cls)


# ====================================================================== allocators
class AllocatorHeuristic(Heuristic):
    """Sets pool sizes at control steps (``targets``); routes with JSQ at route steps."""

    tasks: ClassVar[tuple[str, ...]] = ("allocate", "joint")

    def control(self, cluster: Cluster) -> np.ndarray:
        """Encodes ``targets`` (nearest valid counts)."""
        return self.base.action_for(prefill_counts=self.clip_counts(self.targets(cluster)))

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """Desired prefill instances per switchable GPU type."""
        raise NotImplementedError


@POLICIES.register("static_ratio")
class StaticRatioPolicy(AllocatorHeuristic):
    """Fixed prefill:decode pool ratio per GPU type (DistServe / Splitwise-style sizing).

    ``prefill_fraction`` of each type's switchable instances serve prefill (rounded, at least
    one); the target is re-asserted at every control step, so after the first step it is a
    no-op. The ratio is a parameter, as in DistServe's offline placement search.

    Args:
        env: A disagg-gym env with an ``allocate`` or ``joint`` task.
        seed: Unused (deterministic); accepted for a uniform constructor.
        prefill_fraction: Share of prefill instances in (0, 1); defaults to the scenario's
            ``allocator.prefill_fraction``.
    """

    name = "static_ratio"

    def __init__(self, env: gym.Env, seed: int = 0, prefill_fraction: float | None = None) -> None:
        super().__init__(env, seed)
        if prefill_fraction is None:
            prefill_fraction = float(self.base.scenario.allocator.prefill_fraction)
        if (
            not isinstance(prefill_fraction, (int, float))
            or not 0.0 < float(prefill_fraction) < 1.0
        ):
            raise ValueError(f"prefill_fraction must be in (0, 1) (got {prefill_fraction!r})")
        self.prefill_fraction = float(prefill_fraction)

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """``round(prefill_fraction * instances)`` per GPU type, at least one."""
        out = {}
        for g in self.base.gpus:
            total = sum(cluster.role_counts(g))
            out[g] = max(1, round(self.prefill_fraction * total))
        return out


@POLICIES.register("threshold")
class ThresholdPolicy(AllocatorHeuristic):
    """Queue/SLO-threshold autoscaler in the style of Dynamo's planner.

    At each control step, per GPU type: if the mean predicted prefill wait is over
    ``ttft_target_s`` by more than decode pressure is over ``decode_pressure_target``, one
    more instance serves prefill; in the opposite case one fewer.

    Args:
        env: A disagg-gym env with an ``allocate`` or ``joint`` task.
        seed: Unused (deterministic).
        ttft_target_s: Prefill-wait target (default: the scenario's ``allocator.ttft_target_s``).
        decode_pressure_target: Decode slot/KV occupancy target (default: the scenario's).
    """

    name = "threshold"

    def __init__(
        self,
        env: gym.Env,
        seed: int = 0,
        ttft_target_s: float | None = None,
        decode_pressure_target: float | None = None,
    ) -> None:
        super().__init__(env, seed)
        alloc = self.base.scenario.allocator
        self.ttft_target_s = float(alloc.ttft_target_s if ttft_target_s is None else ttft_target_s)
        self.decode_pressure_target = float(
            alloc.decode_pressure_target
            if decode_pressure_target is None
            else decode_pressure_target
        )
        if not self.ttft_target_s > 0:
            raise ValueError(f"ttft_target_s must be > 0 (got {ttft_target_s!r})")
        if not self.decode_pressure_target > 0:
            raise ValueError(f"decode_pressure_target must be > 0 (got {decode_pressure_target!r})")

    def targets(self, cluster: Cluster) -> dict[str, int]:
        """Current prefill count +-1 per GPU type, towards the phase further over target."""
        now = cluster.engine.now
        out = {}
        for g in self.base.gpus:
            insts = [i for i in cluster.instances if i.gpu == g and i.role is not Role.COLOCATED]
            pre = [i for i in insts if i.role is Role.PREFILL and i.state == "active"]
            dec = [i for i in insts if i.role is Role.DECODE and i.state == "active"]
            n_p, _ = cluster.role_counts(g)
            out[g] = n_p
            if not pre or not dec:
                continue
            p_over = sum(prefill_wait_s(i, now) for i in pre) / len(pre) / self.ttft_target_s
            d_over = sum(decode_pressure(i) for i in dec) / len(dec) / self.decode_pressure_target
            if p_over > 1.0 and p_over > d_over:
                out[g] = n_p + 1
            elif d_over > 1.0 and d_over > p_over:
                out[g] = n_p - 1
        return out


derive_router_heuristics()
POLICIES.on_import(derive_router_heuristics)  # routers of --import modules and plugins
POLICIES.alias(
    "clairvoyant", "length_oracle",
    "heuristic 'clairvoyant' is deprecated: it is an output-length oracle, not an upper bound; "
    "use 'length_oracle' (bounds: disagg-gym bounds)",
)
