r"""A single-file, CleanRL-style PPO for disagg-gym (torch only; no SB3): the reference learner.

It uses nothing but the env's public Gymnasium API plus ``env.unwrapped.action_masks()``:
a ``MultiDiscrete`` categorical per action dimension, invalid values masked out, GAE, the
clipped surrogate. Two policies:

* ``--policy mlp``: a plain MLP over the flattened observation (what a user writes first);
* ``--policy scorer``: a size-invariant per-instance scorer (one small MLP scores every instance
  row; works for any number of instances with ``env.obs_mode: padded``).

Usage::

    python scripts/cleanrl_ppo.py --env-id disagg/SmallRoute-v3 --total-timesteps 50000 \
        --save runs/small_mlp.pt --eval-episodes 3

It prints one line per update (``step, episodic return, sps``) and, with ``--eval-episodes``,
the trained policy's KPIs on held-out workload seeds (10000+), both greedy (masked argmax) and
sampled (the stochastic policy PPO trained), next to masked-random and round-robin.

Defaults differ from CleanRL's Atari/MuJoCo ones in two places, both measured on SmallRoute
(docs/agents.md): learning rate 1e-3 (annealed) and 10 epochs of 32 minibatches per update
(SB3's epochs and batch size). With CleanRL's 4 x 4 and 3e-4, 50k steps are 768 gradient
steps: too few for the policy to become state-dependent at all. ``--curve PATH`` writes the learning curve (CSV: step, wall_s, mean reward per
step over the last update).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import disagg_gym  # noqa: F401  (registers the env ids)
from disagg_gym.argtypes import nonneg_int, positive_int
from disagg_gym.env.registration import resolve_env_id
from disagg_gym.errors import UserError
from disagg_gym.io import check_output_file, describe_os_error


def json_dict(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of dotted-key env overrides."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object of overrides ({exc.msg}) (got {text!r})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of overrides (got {text!r})")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cleanrl_ppo.py", description=__doc__.split("\n")[0])
    p.add_argument("--env-id", default="disagg/SmallRoute-v3")
    p.add_argument("--overrides", type=json_dict, default={}, help="JSON dict of dotted-key env overrides")
    p.add_argument("--policy", choices=["mlp", "scorer"], default="mlp")
    p.add_argument("--total-timesteps", type=positive_int, default=50_000)
    p.add_argument("--num-envs", type=positive_int, default=4)
    p.add_argument("--num-steps", type=positive_int, default=256, help="steps per env per update")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--num-minibatches", type=positive_int, default=32)
    p.add_argument("--update-epochs", type=positive_int, default=10)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--hidden", type=positive_int, default=64)
    p.add_argument("--shaping", type=float, default=0.0,
                   help="train with disagg_gym.wrappers.QueueShaping at this weight (0: off)")
    p.add_argument("--seed", type=nonneg_int, default=1)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    p.add_argument("--save", default=None, help="write the trained weights (+ args) here")
    p.add_argument("--curve", default=None, help="write the learning curve CSV here")
    p.add_argument("--eval-episodes", type=nonneg_int, default=0, help="held-out episodes after training")
    p.add_argument("--eval-overrides", type=json_dict, default=None, help="JSON overrides of the evaluation env")
    p.add_argument("--eval-env-id", default=None, help="evaluate on this env id (default: --env-id)")
    p.add_argument("--load", default=None, help="skip training; evaluate these saved weights")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- policies
def layer(i: int, o: int, std: float = float(np.sqrt(2))) -> nn.Linear:
    m = nn.Linear(i, o)
    nn.init.orthogonal_(m.weight, std)
    nn.init.constant_(m.bias, 0.0)
    return m


class MlpAgent(nn.Module):
    """CleanRL's agent: separate tanh MLPs for the value and the concatenated logits."""

    def __init__(self, obs_dim: int, nvec: list[int], hidden: int = 64) -> None:
        super().__init__()
        self.nvec = nvec
        self.critic = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(), layer(hidden, 1, 1.0))
        self.actor = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(), layer(hidden, sum(nvec), 0.01))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)


class ScorerAgent(nn.Module):
    """Size-invariant per-instance scorer for route tasks.

    The observation is split into ``slots`` instance rows of ``nf`` features and a context
    vector; one MLP embeds ``[row, context]``; prefill and decode logits are linear in
    ``[embedding, mean-pooled embedding]``; the reject logit and the value come from the pooled
    embedding and the context. The same weights serve any number of slots.
    """

    def __init__(self, nf: int, n_ctx: int, hidden: int = 64, padded: bool = False) -> None:
        super().__init__()
        self.nf, self.n_ctx, self.padded = nf, n_ctx, padded
        self.embed = nn.Sequential(layer(nf + n_ctx, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh())
        self.prefill = layer(2 * hidden, 1, 0.01)
        self.decode = layer(2 * hidden, 1, 0.01)
        self.reject = layer(hidden + n_ctx, 1, 0.01)
        self.critic = nn.Sequential(layer(hidden + n_ctx, hidden), nn.Tanh(), layer(hidden, 1, 1.0))

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = (x.shape[1] - self.n_ctx) // self.nf
        rows = x[:, : n * self.nf].reshape(-1, n, self.nf)
        ctx = x[:, n * self.nf :]
        h = self.embed(torch.cat([rows, ctx[:, None, :].expand(-1, n, -1)], dim=-1))
        if not self.padded:
            return h, h.mean(dim=1), ctx
        valid = rows[:, :, -1:]  # obs_mode padded: mean over real instances only
        return h, (h * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0), ctx

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, pooled, ctx = self._encode(x)
        hp = torch.cat([h, pooled[:, None, :].expand_as(h)], dim=-1)
        rej = self.reject(torch.cat([pooled, ctx], dim=-1)) - 4.0  # start by serving requests
        return torch.cat([self.prefill(hp).squeeze(-1), rej, self.decode(hp).squeeze(-1)], dim=-1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        _, pooled, ctx = self._encode(x)
        return self.critic(torch.cat([pooled, ctx], dim=-1))


def scorer_layout(env: gym.Env) -> tuple[int, int]:
    """(features per instance row, context length) of a disagg-gym route env's flat observation."""
    base = env.unwrapped
    slots = int(base.action_space.nvec[1])
    nf = int(getattr(base, "row_features", 10))
    ctx = int(np.prod(env.observation_space.shape)) - slots * nf
    return nf, ctx


def act(agent: nn.Module, x: torch.Tensor, masks: torch.Tensor, nvec: list[int], action: torch.Tensor | None = None):
    """(action, log-prob, entropy, value); a masked categorical per action dimension."""
    logits = agent.logits(x).masked_fill(~masks, -1e8)
    logps, ents, acts = [], [], []
    for k, part in enumerate(torch.split(logits, nvec, dim=1)):
        lp = torch.log_softmax(part, dim=1)
        a = torch.multinomial(lp.exp(), 1).squeeze(1) if action is None else action[:, k]
        acts.append(a)
        logps.append(lp.gather(1, a[:, None]).squeeze(1))
        ents.append(-(lp.exp() * lp).sum(1))
    return torch.stack(acts, 1), torch.stack(logps, 1).sum(1), torch.stack(ents, 1).sum(1), agent.value(x).squeeze(-1)


class Greedy:
    """SB3-style ``predict`` of a trained agent (masked argmax), for disagg_gym_agents.evaluation."""

    def __init__(self, agent: nn.Module, env: gym.Env) -> None:
        self.agent, self.env = agent, env
        self.nvec = [int(v) for v in env.action_space.nvec]

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, **_: Any):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        m = torch.as_tensor(self.env.unwrapped.action_masks()[None, :])
        with torch.no_grad():
            logits = self.agent.logits(x).masked_fill(~m, -1e8)
        parts = torch.split(logits, self.nvec, dim=1)
        if deterministic:
            return np.array([int(p.argmax()) for p in parts], dtype=np.int64), state
        self._gen = getattr(self, "_gen", None) or torch.Generator().manual_seed(0)
        return np.array([int(torch.multinomial(torch.softmax(p, dim=1)[0], 1, generator=self._gen)) for p in parts],
                        dtype=np.int64), state


def make_agent(kind: str, env: gym.Env, hidden: int) -> nn.Module:
    nvec = [int(v) for v in env.action_space.nvec]
    if kind == "mlp":
        return MlpAgent(int(np.prod(env.observation_space.shape)), nvec, hidden)
    nf, ctx = scorer_layout(env)
    return ScorerAgent(nf, ctx, hidden, padded=bool(getattr(env.unwrapped, "padded", False)))


# ---------------------------------------------------------------------------- training
def train(args: argparse.Namespace) -> tuple[nn.Module, list[tuple[int, float, float]]]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    over = args.overrides
    envs = [gym.make(args.env_id, overrides=over) for _ in range(args.num_envs)]
    if args.shaping > 0:
        from disagg_gym.wrappers import QueueShaping

        envs = [QueueShaping(e, gamma=args.gamma, wait_weight=args.shaping, pressure_weight=args.shaping) for e in envs]
    nvec = [int(v) for v in envs[0].action_space.nvec]
    agent = make_agent(args.policy, envs[0], args.hidden)
    opt = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    n, t = args.num_envs, args.num_steps
    obs_dim = int(np.prod(envs[0].observation_space.shape))
    b_obs = torch.zeros((t, n, obs_dim))
    b_mask = torch.zeros((t, n, sum(nvec)), dtype=torch.bool)
    b_act = torch.zeros((t, n, len(nvec)), dtype=torch.long)
    b_logp, b_rew, b_done, b_val = (torch.zeros((t, n)) for _ in range(4))
    rng = np.random.default_rng(args.seed)
    # training workload seeds are >= 1_000_000 (disjoint from the held-out 10000+ / 20000+)
    obs = [e.reset(seed=int(rng.integers(1_000_000, 2**31 - 1)))[0] for e in envs]
    done = np.zeros(n)
    curve: list[tuple[int, float, float]] = []
    start, step = time.time(), 0
    updates = max(1, args.total_timesteps // (n * t))
    for update in range(updates):
        lr = args.learning_rate * (1.0 - update / updates)
        opt.param_groups[0]["lr"] = lr
        for s in range(t):
            x = torch.as_tensor(np.stack(obs).astype(np.float32))
            m = torch.as_tensor(np.stack([e.unwrapped.action_masks() for e in envs]))
            with torch.no_grad():
                a, logp, _, v = act(agent, x, m, nvec)
            b_obs[s], b_mask[s], b_act[s], b_logp[s], b_val[s] = x, m, a, logp, v
            b_done[s] = torch.as_tensor(done)
            for i, e in enumerate(envs):
                o, r, term, trunc, _ = e.step(a[i].numpy())
                b_rew[s, i] = float(r)
                done[i] = float(term or trunc)
                if term or trunc:
                    o, _ = e.reset(seed=int(rng.integers(1_000_000, 2**31 - 1)))
                obs[i] = o
            step += n
        with torch.no_grad():  # GAE
            nxt = agent.value(torch.as_tensor(np.stack(obs).astype(np.float32))).squeeze(-1)
            adv = torch.zeros((t, n))
            last = torch.zeros(n)
            nd = torch.as_tensor(1.0 - done, dtype=torch.float32)
            for s in reversed(range(t)):
                if s < t - 1:
                    nd, nxt = 1.0 - b_done[s + 1], b_val[s + 1]
                delta = b_rew[s] + args.gamma * nxt * nd - b_val[s]
                last = delta + args.gamma * args.gae_lambda * nd * last
                adv[s] = last
            ret = adv + b_val
        fo, fm, fa = b_obs.reshape(t * n, -1), b_mask.reshape(t * n, -1), b_act.reshape(t * n, -1)
        flp, fadv, fret = b_logp.reshape(-1), adv.reshape(-1), ret.reshape(-1)
        mb = (t * n) // args.num_minibatches
        for _ in range(args.update_epochs):
            perm = torch.randperm(t * n)
            for k in range(0, t * n, mb):
                idx = perm[k : k + mb]
                _, newlogp, ent, newv = act(agent, fo[idx], fm[idx], nvec, fa[idx])
                ratio = (newlogp - flp[idx]).exp()
                a_ = fadv[idx]
                a_ = (a_ - a_.mean()) / (a_.std() + 1e-8)
                pg = torch.max(-a_ * ratio, -a_ * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                vloss = 0.5 * ((newv - fret[idx]) ** 2).mean()
                loss = pg - args.ent_coef * ent.mean() + args.vf_coef * vloss
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                opt.step()
        wall = time.time() - start
        curve.append((step, wall, float(b_rew.mean())))
        print(f"update {update + 1}/{updates} step {step} reward/step {b_rew.mean():.4f} "
              f"vloss {vloss.item():.4f} entropy {ent.mean().item():.3f} sps {step / wall:.0f}", flush=True)
    return agent, curve


def evaluate_all(agent: nn.Module, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Greedy agent vs masked random and round-robin on held-out seeds (10000 + k)."""
    from disagg_gym_agents.evaluation import evaluate, summarize
    from disagg_gym_agents.registry import POLICIES

    env_id = args.eval_env_id or args.env_id
    over = args.eval_overrides if args.eval_overrides is not None else args.overrides
    out = {}
    for name in ("learned", "learned_sampled", "random", "round_robin"):
        env = gym.make(env_id, overrides=over)
        pol = Greedy(agent, env) if name.startswith("learned") else POLICIES.get(name)(env, seed=0)
        rows = evaluate(pol, env, args.eval_episodes, deterministic=name != "learned_sampled")
        s = summarize(rows, ("goodput_rps", "slo_tokens_per_s", "slo_attainment", "requests_rejected"))
        s["invalid_actions"] = {"mean": float(np.mean([r["invalid_actions"] for r in rows]))}
        out[name] = {k: v["mean"] for k, v in s.items()}
        print(f"eval {name:12s} " + " ".join(f"{k}={v:.4g}" for k, v in out[name].items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"cleanrl_ppo.py: error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"cleanrl_ppo.py: error: {describe_os_error(exc)}", file=sys.stderr)
    return 2


def check_args(args: argparse.Namespace) -> None:
    """Bad input as one line before any training (ids, budgets, output paths)."""
    # any registered id, or a standard config's name / older id (one line naming it if none)
    args.env_id = args.env_id if args.env_id in gym.registry else resolve_env_id(args.env_id)
    if args.eval_env_id is not None and args.eval_env_id not in gym.registry:
        args.eval_env_id = resolve_env_id(args.eval_env_id)
    gym.make(args.env_id, overrides=args.overrides).close()  # a bad override names itself now
    if not args.load and args.total_timesteps < args.num_envs * args.num_steps:
        raise UserError(
            f"--total-timesteps {args.total_timesteps} is less than one update "
            f"(--num-envs x --num-steps = {args.num_envs * args.num_steps})"
        )
    for flag, path in (("--save", args.save), ("--curve", args.curve)):
        if path:
            check_output_file(path, flag)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    if args.load:
        try:
            blob = torch.load(args.load, weights_only=False)
            policy, hidden, state = blob["policy"], blob["hidden"], blob["state_dict"]
        except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:  # OSError: main() says it
            raise UserError(f"--load {args.load}: not weights saved by this script's --save ({exc})") from None
        env = gym.make(args.env_id, overrides=args.overrides)
        agent = make_agent(policy, env, hidden)
        try:
            agent.load_state_dict(state)
        except RuntimeError:  # shapes of another env's spaces
            saved = (blob.get("args") or {}) if isinstance(blob, dict) else {}
            where = f"--env-id {saved.get('env_id')} --overrides {json.dumps(saved.get('overrides'))}" if saved else "another env"
            raise UserError(
                f"--load {args.load}: these weights were trained on {where}, whose observation or action space "
                f"differs from --env-id {args.env_id} --overrides {json.dumps(args.overrides)}; evaluate them there"
            ) from None
    else:
        agent, curve = train(args)
        if args.save:
            Path(args.save).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"policy": args.policy, "hidden": args.hidden, "state_dict": agent.state_dict(), "args": vars(args)}, args.save)
        if args.curve:
            Path(args.curve).parent.mkdir(parents=True, exist_ok=True)
            Path(args.curve).write_text("step,wall_s,reward_per_step\n" + "".join(f"{a},{b:.2f},{c:.6f}\n" for a, b, c in curve))
    if args.eval_episodes:
        evaluate_all(agent, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
