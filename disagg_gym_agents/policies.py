"""Instance-scoring actor-critic policies for SB3 PPO / sb3-contrib MaskablePPO.

A flat MLP over the whole observation has to *learn* that instance 3's queue belongs to
action 3, separately for every instance, and an untrained one routes uniformly at random. The
policies here score each instance with one shared network instead (a permutation-equivariant
"pointer" head, as in Decima, Mao et al. 2019), so "prefer the instance with the shorter
predicted wait" is a single weight, and the same weights serve 4 or 64 instances:

* every instance row ``x_i`` (the env's ``N x 10`` features) is embedded together with the
  request/decision/global context ``c``: ``h_i = MLP([x_i, c])``;
* prefill and decode logits are ``w_p . [h_i, pool(h)] + b_p[i]`` and ``w_d . [h_i, pool(h)]
  + b_d[i]``, ``pool`` = mean and max over instances, ``b`` learned per-instance offsets
  (started at 0) for what the features do not show (site, price, place in the topology);
* optionally (``prior_scale > 0``) a load prior is subtracted: ``w_p . [queued, wait]_i``
  from prefill logits and ``w_d . [batch, kv, backlog]_j`` from decode logits, with the
  weights learned and started at ``prior_scale``, so the greedy action starts as a
  join-shortest-queue choice and PPO learns a residual on it (residual policy learning,
  Silver et al. 2018). Without it, an untrained policy's near-equal logits make the *greedy*
  action send every request to one instance;
* the admission-control (reject) logit comes from ``MLP([pool(h), c])``, with its bias started
  at ``reject_bias`` (default -4) so that an untrained policy serves nearly every request; with
  ``relative_reject`` the reject logit is added to the best valid prefill logit, so that start
  holds however loaded the cluster is (with the load prior, absolute prefill logits fall as
  load rises, which would make rejecting look ever cheaper);
* allocation logits per GPU type come from ``MLP([pool(h), c])`` minus ``stay_cost x
  |count - current count|`` (learned, started at 1), so an untrained policy mostly keeps
  the current pool sizes instead of flipping roles at random;
* the value is ``MLP([pool(h), c])``.

The layout (task, instances, reject value, GPU type sizes) comes from the env and is stored
with the model (``policy_kwargs["layout"]``); ``layout_of(env)`` builds it. Works with the
env's flat ``Box`` observation (``obs_mode: box``; on configs with prefix caching its per-instance
cache features, which come after the context, join each instance's row: ``cache_tail``) and with
the size-invariant padded one
(``obs_mode: padded``, route tasks): there ``n`` is the number of slots
(``env.max_instances``), each row has a ``valid`` column (last) and, on configs with prefix
caching, the 5 cache features (the row width, ``row_features``, is read from the env), pooling
runs over the valid rows only, and with ``instance_bias=False`` (no per-slot offsets) nothing in the weights depends
on the instance count, so a model trained on a 4-instance cluster acts on a 64-instance one
padded to the same number of slots (docs/agents.md, "Train small, test large").
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn
from torch.nn import functional as F  # noqa: N812

from disagg_gym.env.observation import (
    CACHE_FEATURES,
    DECISION_FEATURES,
    GLOBAL_FEATURES,
    INSTANCE_FEATURES,
    REQUEST_FEATURES,
)
from disagg_gym.errors import UserError

NF = len(INSTANCE_FEATURES)
_COL = {f[0]: i for i, f in enumerate(INSTANCE_FEATURES)}
PREFILL_LOAD = [_COL["queued_tokens"], _COL["prefill_wait"]]
"""Instance feature columns of the prefill load prior."""
DECODE_LOAD = [_COL["decode_batch"], _COL["kv_used"], _COL["decode_backlog"]]
"""Instance feature columns of the decode load prior."""
N_CTX_FIXED = len(REQUEST_FEATURES) + len(DECISION_FEATURES) + len(GLOBAL_FEATURES)


def layout_of(env: gym.Env) -> dict[str, Any]:
    """The ``layout`` policy kwarg of a disagg-gym env (task, instances, reject, GPU sizes)."""
    base = env.unwrapped
    for name in ("task", "n", "allow_reject", "gpu_sizes"):
        if not hasattr(base, name):
            raise ValueError(f"{type(base).__name__} is not a disagg-gym env (no {name!r})")
    mode = getattr(base.cfg, "obs_mode", "box")
    if mode not in ("box", "padded"):
        raise UserError(f"instance policies need env.obs_mode: box or padded (got {mode!r})")
    if mode == "padded":
        return {
            "task": str(base.task),
            "n": int(base.slots),
            "allow_reject": bool(base.allow_reject),
            "gpu_sizes": [],
            "padded": True,
            "row_features": int(base.row_features),  # 10 + valid, + 5 with cache features
        }
    out = {
        "task": str(base.task),
        "n": int(base.n),
        "allow_reject": bool(base.allow_reject),
        "gpu_sizes": [int(c) for c in base.gpu_sizes],
    }
    if getattr(base, "cache_obs", False):
        # the flat layout appends N x 5 cache features after the context (env/observation.py)
        out["cache_tail"] = len(CACHE_FEATURES)
    return out


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for the layers of the instance policies, without ``nn.Module.__call__``:
    the same functions their ``forward`` calls (``F.linear``, ``torch.tanh``, ``torch.relu``).
    """
    kind = type(module)
    if kind is nn.Linear:
        return F.linear(x, module.weight, module.bias)
    if kind is nn.Sequential:
        for m in module:
            x = _apply(m, x)
        return x
    if kind is nn.Tanh:
        return torch.tanh(x)
    if kind is nn.ReLU:
        return torch.relu(x)
    return module(x)


def _mlp(sizes: list[int], act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers)


class InstanceScorer(nn.Module):
    """The SB3 ``mlp_extractor`` of the instance policies: ``forward_actor`` returns logits.

    Args:
        obs_dim: Length of the flat observation.
        layout: ``layout_of(env)``.
        hidden: Width of the instance embedding and the heads.
        act: Activation class.
        reject_bias: Initial bias of the reject logit.
    """

    def __init__(
        self,
        obs_dim: int,
        layout: dict[str, Any],
        hidden: int = 64,
        act: type[nn.Module] = nn.Tanh,
        reject_bias: float = -4.0,
        prior_scale: float = 0.0,
        relative_reject: bool = False,
        instance_bias: bool = True,
    ) -> None:
        super().__init__()
        self.relative_reject = bool(relative_reject)
        self.instance_bias = bool(instance_bias)
        self.task = layout["task"]
        if self.task not in ("route", "allocate", "joint"):
            raise ValueError(f"layout task must be route, allocate or joint (got {self.task!r})")
        self.n = int(layout["n"])
        self.reject = bool(layout["allow_reject"])
        self.sizes = [int(c) for c in layout["gpu_sizes"]]
        self.padded = bool(layout.get("padded", False))
        # padded rows end with a validity column (and hold the cache features before it when the
        # env has them); layouts saved before row_features existed had 10 + valid
        # the flat layout with prefix caching: each instance's cache features come after the
        # context; _split puts them back in the instance's row (row width NF + tail)
        self.tail = 0 if self.padded else int(layout.get("cache_tail", 0))
        self.nf = int(layout.get("row_features", NF + 1)) if self.padded else NF + self.tail
        self.n_ctx = N_CTX_FIXED + len(self.sizes)
        expect = self.n * self.nf + self.n_ctx
        if obs_dim != expect:
            raise UserError(
                f"observation length {obs_dim} does not match the layout "
                f"({self.n} instances x {self.nf} + {self.n_ctx} = {expect})"
            )
        self.route = self.task in ("route", "joint")
        self.alloc = self.task in ("allocate", "joint")
        h = hidden
        self.embed = _mlp([self.nf + self.n_ctx, h, h], act)
        self.pool_ctx = _mlp([2 * h + self.n_ctx, h], act)
        self.value = _mlp([2 * h + self.n_ctx, h, h], act)
        if self.route:
            self.prefill_head = nn.Linear(3 * h, 1)
            self.decode_head = nn.Linear(3 * h, 1)
            # per-instance offsets (start at 0): what the shared features cannot tell apart,
            # e.g. an instance's site and price or its place in the topology
            # (instance_bias=False: none, so the weights do not depend on the instance count)
            self.prefill_bias = nn.Parameter(torch.zeros(self.n), requires_grad=self.instance_bias)
            self.decode_bias = nn.Parameter(torch.zeros(self.n), requires_grad=self.instance_bias)
            # load prior (learned weights, started at prior_scale; 0 = off): the logits start
            # as -w . load, so the greedy action starts as a join-shortest-queue choice
            self.prior = prior_scale != 0.0
            if self.prior:
                self.prefill_prior = nn.Parameter(torch.full((len(PREFILL_LOAD),), float(prior_scale)))
                self.decode_prior = nn.Parameter(torch.full((len(DECODE_LOAD),), float(prior_scale)))
            if self.reject:
                self.reject_head = nn.Linear(h, 1)
        if self.alloc:
            self.alloc_head = nn.Linear(h, sum(c + 1 for c in self.sizes))
            self.stay_cost = nn.Parameter(torch.ones(len(self.sizes)))
            dist = [
                torch.arange(c + 1, dtype=torch.float32) for c in self.sizes
            ]  # count values per type
            self.register_buffer("_counts", torch.cat(dist), persistent=False)
        self.latent_dim_pi = (
            (2 * self.n + (1 if self.reject else 0) if self.route else 0)
            + (sum(c + 1 for c in self.sizes) if self.alloc else 0)
        )
        self.latent_dim_vf = h
        self._reject_bias = float(reject_bias)

    def init_heads(self) -> None:
        """Small output weights (near-uniform start), reject bias, stay prior (after SB3's init)."""
        heads = []
        if self.route:
            heads += [self.prefill_head, self.decode_head]
            if self.reject:
                heads.append(self.reject_head)
        if self.alloc:
            heads.append(self.alloc_head)
        for m in heads:
            nn.init.orthogonal_(m.weight, gain=0.01)
            nn.init.zeros_(m.bias)
        if self.route and self.reject:
            nn.init.constant_(self.reject_head.bias, self._reject_bias)

    def _split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tail:  # [N x NF | context | N x tail] -> rows [NF features + tail], context
            k = self.n * NF
            c = k + self.n_ctx
            rows = torch.cat([obs[:, :k].reshape(-1, self.n, NF), obs[:, c:].reshape(-1, self.n, self.tail)], dim=-1)
            return rows, obs[:, k:c]
        k = self.n * self.nf
        return obs[:, :k].reshape(-1, self.n, self.nf), obs[:, k:]

    def _encode(
        self, obs: torch.Tensor, run: Any = _call
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(instance rows, their embeddings, pooled embeddings, context)."""
        inst, ctx = self._split(obs)
        b = inst.shape[0]
        h = run(self.embed, torch.cat([inst, ctx[:, None, :].expand(b, self.n, self.n_ctx)], dim=-1))
        if not self.padded:
            pooled = torch.cat([h.mean(dim=1), h.max(dim=1).values], dim=-1)
            return inst, h, pooled, ctx
        valid = inst[:, :, -1:] > 0.5  # pool over real instances only
        mean = (h * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        mx = torch.where(valid, h, torch.full_like(h, -1e9)).max(dim=1).values
        pooled = torch.cat([mean, torch.where(valid.any(dim=1), mx, torch.zeros_like(mx))], dim=-1)
        return inst, h, pooled, ctx

    def forward_actor(self, obs: torch.Tensor) -> torch.Tensor:
        return self._logits(*self._encode(obs))

    def actor_logits(self, obs: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_actor` for inference: the same tensor operations in the same order
        (identical logits, bit for bit), with the layers applied as functions instead of through
        ``nn.Module.__call__`` (its hooks and dispatch cost ~20 % of a single-observation pass).
        No hooks run: call it under ``torch.inference_mode()`` / ``no_grad``, not for training.
        """
        return self._logits(*self._encode(obs, _apply), run=_apply)

    def actor_critic_latents(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for inference (logits and value latent from one encoding), with the
        layers applied as functions like :meth:`actor_logits`: identical values, bit for bit.
        No hooks run: call it under ``torch.inference_mode()`` / ``no_grad``, not for training.
        """
        inst, h, pooled, ctx = self._encode(obs, _apply)
        return self._logits(inst, h, pooled, ctx, run=_apply), _apply(self.value, torch.cat([pooled, ctx], dim=-1))

    def _logits(
        self, inst: torch.Tensor, h: torch.Tensor, pooled: torch.Tensor, ctx: torch.Tensor, run: Any = _call
    ) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        g = run(self.pool_ctx, torch.cat([pooled, ctx], dim=-1))
        if self.route:
            hp = torch.cat([h, pooled[:, None, :].expand(-1, self.n, -1)], dim=-1)
            lp = run(self.prefill_head, hp).squeeze(-1) + self.prefill_bias
            ld = run(self.decode_head, hp).squeeze(-1) + self.decode_bias
            if self.prior:
                lp = lp - inst[:, :, PREFILL_LOAD] @ self.prefill_prior
                ld = ld - inst[:, :, DECODE_LOAD] @ self.decode_prior
            parts.append(lp)
            if self.reject:
                rej = run(self.reject_head, g)
                if self.relative_reject:  # relative to the best prefill instance's logit
                    ok = (inst[:, :, _COL["serves_prefill"]] > 0.5) & (inst[:, :, _COL["accepting"]] > 0.5)
                    best = torch.where(ok, lp, torch.full_like(lp, -1e9)).max(dim=1, keepdim=True).values
                    rej = rej + torch.where(ok.any(dim=1, keepdim=True), best, torch.zeros_like(best))
                parts.append(rej)
            parts.append(ld)
        if self.alloc:
            logits = run(self.alloc_head, g)
            shares = ctx[:, N_CTX_FIXED:]  # prefill share per GPU type
            cur = torch.cat(
                [
                    (shares[:, i : i + 1] * c).round().expand(-1, c + 1)
                    for i, c in enumerate(self.sizes)
                ],
                dim=-1,
            )
            cost = torch.cat(
                [self.stay_cost[i].expand(c + 1) for i, c in enumerate(self.sizes)]
            )
            parts.append(logits - cost * (self._counts - cur).abs())
        return torch.cat(parts, dim=-1)

    def forward_critic(self, obs: torch.Tensor) -> torch.Tensor:
        _, _, pooled, ctx = self._encode(obs)
        return self.value(torch.cat([pooled, ctx], dim=-1))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inst, h, pooled, ctx = self._encode(obs)  # once for both heads
        return self._logits(inst, h, pooled, ctx), self.value(torch.cat([pooled, ctx], dim=-1))


def actor_latent(extractor: Any, features: torch.Tensor) -> torch.Tensor:
    """``extractor.forward_actor(features)`` for inference (under ``torch.inference_mode``):
    :meth:`InstanceScorer.actor_logits` for the instance policies (identical values, less
    dispatch), SB3's own ``forward_actor`` for any other extractor.
    """
    if isinstance(extractor, InstanceScorer):
        return extractor.actor_logits(features)
    return extractor.forward_actor(features)


def normalised_logits(logits: torch.Tensor, sizes: list[int], masks: Any = None) -> list[torch.Tensor]:
    """Per action dimension, the log-probabilities SB3's distributions hold for ``logits``
    (``(batch, sum(sizes))``): ``x - logsumexp(x)`` (``torch.distributions.Categorical``); with
    ``masks`` (``(batch, sum(sizes))`` booleans, sb3-contrib's ``MaskableCategorical``), masked
    values set to -1e8 and normalised again. The same tensor operations in the same order as
    those classes, so the values are theirs bit for bit (``softmax`` of each is its
    ``probs``).
    """
    total = sum(sizes)
    parts: Any = [None] * len(sizes)
    if masks is not None:
        parts = torch.split(torch.as_tensor(masks).view(-1, total), sizes, dim=1)
    huge_neg = torch.tensor(-1e8, dtype=logits.dtype)
    out = []
    for x, mk in zip(torch.split(logits.view(-1, total), sizes, dim=1), parts):
        y = x - x.logsumexp(dim=-1, keepdim=True)
        if mk is not None:
            y = torch.where(torch.as_tensor(mk, dtype=torch.bool).reshape(y.shape), y, huge_neg)
            y = y - y.logsumexp(dim=-1, keepdim=True)
        out.append(y)
    return out


class _InstanceMixin:
    """Replaces SB3's MLP extractor + linear action head with an ``InstanceScorer``."""

    def __init__(
        self,
        *args: Any,
        layout: dict[str, Any] | None = None,
        hidden: int = 64,
        reject_bias: float = -4.0,
        prior_scale: float = 0.0,
        relative_reject: bool = False,
        instance_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        if layout is None:
            raise ValueError("instance policies need policy_kwargs['layout'] (disagg_gym_agents.policies.layout_of)")
        self.layout = dict(layout)
        self.hidden = int(hidden)
        self.reject_bias = float(reject_bias)
        self.prior_scale = float(prior_scale)
        self.relative_reject = bool(relative_reject)
        self.instance_bias = bool(instance_bias)
        kwargs.pop("net_arch", None)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = InstanceScorer(
            self.features_dim, self.layout, self.hidden, self.activation_fn, self.reject_bias,
            self.prior_scale, self.relative_reject, self.instance_bias,
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self.action_net = nn.Identity()  # the scorer already emits the logits
        self.mlp_extractor.init_heads()
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _rollout(
        self, obs: torch.Tensor, deterministic: bool, action_masks: Any, dims: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SB3's ``forward`` under ``torch.no_grad()`` (how PPO / MaskablePPO
        ``collect_rollouts`` call it on every training step), bit for bit and with the same
        random draws, without building a ``Categorical`` per action dimension (sb3-contrib
        builds three per dimension and step, each re-normalising its logits through
        ``torch.distributions``) and with the layers applied as functions
        (:meth:`InstanceScorer.actor_logits`): the same tensor operations in the same order.

        Per action dimension, as ``torch.distributions.Categorical`` does: the logits are
        normalised (``x - logsumexp(x)``); with masks (sb3-contrib's ``MaskableCategorical``),
        masked values become -1e8 and the result is normalised again; an action is drawn with
        ``torch.multinomial(softmax(.), 1, True)`` (``Categorical.sample``), or is the argmax of
        the probabilities when ``deterministic``; its log-probability is read from the
        normalised logits (``gather``); the dimensions' log-probabilities are stacked and
        summed. ``tests/agents/test_fast_rollout.py`` compares both paths on random
        observations and masks and after training (identical weights). Unlike SB3's path,
        ``self.action_dist`` keeps no distributions from this call (nothing in a rollout reads
        them).
        """
        features = self.extract_features(obs)  # type: ignore[attr-defined]
        latent_pi, latent_vf = self.mlp_extractor.actor_critic_latents(features)
        values = F.linear(latent_vf, self.value_net.weight, self.value_net.bias)  # type: ignore[attr-defined]
        sizes = [int(d) for d in dims]
        normed = normalised_logits(latent_pi, sizes, action_masks)  # action_net is the identity
        actions: list[torch.Tensor] = []
        for y in normed:
            probs = F.softmax(y, dim=-1)
            if deterministic:
                actions.append(torch.argmax(probs, dim=1))
            else:
                actions.append(torch.multinomial(probs.reshape(-1, y.shape[-1]), 1, True).T.reshape(y.shape[:-1]))
        act = torch.stack(actions, dim=1)
        log_prob = torch.stack(
            [y.gather(-1, a.unsqueeze(-1)).squeeze(-1) for y, a in zip(normed, torch.unbind(act.view(-1, len(sizes)), dim=1))],
            dim=1,
        ).sum(dim=1)
        return act.reshape((-1, *self.action_space.shape)), values, log_prob  # type: ignore[attr-defined,misc]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(
            layout=self.layout, hidden=self.hidden, reject_bias=self.reject_bias,
            prior_scale=self.prior_scale, relative_reject=self.relative_reject,
            instance_bias=self.instance_bias,
        )
        return data


class InstancePolicy(_InstanceMixin, ActorCriticPolicy):
    """Instance-scoring policy for SB3 ``PPO`` (see the module docstring).

    Rollouts (``forward`` without gradients) skip SB3's per-step distribution objects:
    see :meth:`_InstanceMixin._rollout`. ``fast_rollout = False`` takes SB3's own path.
    """

    fast_rollout = True

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ActorCriticPolicy.forward``: actions, values and log-probabilities (SB3's bits)."""
        if (not self.fast_rollout or torch.is_grad_enabled() or not self.share_features_extractor
                or not isinstance(self.action_dist, MultiCategoricalDistribution)):
            return super().forward(obs, deterministic=deterministic)
        return self._rollout(obs, deterministic, None, self.action_dist.action_dims)


class MaskableInstancePolicy(_InstanceMixin, MaskableActorCriticPolicy):
    """Instance-scoring policy for sb3-contrib ``MaskablePPO`` (see the module docstring).

    Rollouts (``forward`` without gradients, with masks) skip SB3's per-step scaffolding:
    see :meth:`_InstanceMixin._rollout`. ``fast_rollout = False`` (on the class or an
    instance) always takes SB3's own path.
    """

    fast_rollout = True

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False, action_masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``MaskableActorCriticPolicy.forward``: actions, values and log-probabilities (SB3's bits)."""
        if (not self.fast_rollout or action_masks is None or torch.is_grad_enabled()
                or not self.share_features_extractor
                or not isinstance(self.action_dist, MaskableMultiCategoricalDistribution)):
            return super().forward(obs, deterministic=deterministic, action_masks=action_masks)
        return self._rollout(obs, deterministic, action_masks, self.action_dist.action_dims)


POLICY_NAMES = ("InstancePolicy",)
"""Names the hyperparameter YAML's ``policy`` key may use besides SB3's own (``MlpPolicy``)."""


def resolve_policy(name: str, maskable: bool) -> str | type[ActorCriticPolicy]:
    """``"InstancePolicy"`` -> the class for the algorithm; other names pass through to SB3."""
    if name == "InstancePolicy":
        return MaskableInstancePolicy if maskable else InstancePolicy
    return name
