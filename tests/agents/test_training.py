"""Training smoke runs (MaskablePPO / PPO), TensorBoard KPIs, resume, evaluate CSV, CLI errors."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra
pytest.importorskip("tensorboard")  # the [rl] extra

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from disagg_gym_agents.cli import EvalArgs, TrainArgs, cmd_evaluate, run_script
from disagg_gym_agents.hparams import load_hyperparams, parse_policy_kwargs, resolve_hyperparams
from disagg_gym_agents.ppo import train

ENV_ID = "disagg/SmallRoute-v3"
# ~120 route steps per episode: several episodes finish inside a 2k-step smoke run.
OVERRIDES = ["horizon_s=3"]
FAST_HP = """
default:
  policy: MlpPolicy
  n_envs: 1
  n_timesteps: 2048
  n_steps: 256
  batch_size: 64
  n_epochs: 2
  learning_rate: 3.0e-4
  gamma: 0.99
  ent_coef: 0.01
  policy_kwargs: {net_arch: [32, 32], activation_fn: Tanh}
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _hp_file(tmp_path: Path) -> str:
    p = tmp_path / "hp.yml"
    p.write_text(FAST_HP)
    return str(p)


def _args(tmp_path: Path, **kw: object) -> TrainArgs:
    base = dict(
        env=ENV_ID,
        algo="maskable_ppo",
        timesteps=2048,
        seed=0,
        out=str(tmp_path / "run"),
        overrides=list(OVERRIDES),
        hyperparams=_hp_file(tmp_path),
        eval_freq=1024,
        eval_episodes=1,
        checkpoint_freq=1024,
        progress_bar=True,
    )
    base.update(kw)
    return TrainArgs(**base)  # type: ignore[arg-type]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for d in sorted({p.parent for p in (run / "tb").rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(d))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


# ====================================================================== hyperparameters
def test_hyperparams_default_fallback_and_policy_kwargs() -> None:
    hp, entry = load_hyperparams("maskable_ppo", ENV_ID)
    assert entry == ENV_ID
    hp2, entry2 = load_hyperparams("ppo", "disagg/NotInTheFile-v0")
    assert entry2 == "default" and "n_steps" in hp2
    kwargs, extras = resolve_hyperparams(hp)
    assert extras["policy"] == "InstancePolicy" and extras["n_envs"] >= 1
    assert kwargs["policy_kwargs"]["prior_scale"] > 0
    # every standard id has its own (tuned) entry in both shipped files
    from disagg_gym.env.registration import registered_ids

    for algo in ("maskable_ppo", "ppo"):
        for env_id in registered_ids():
            assert load_hyperparams(algo, env_id)[1] == env_id
    for name in ("Tanh", "nn.Tanh", "torch.nn.Tanh"):
        assert parse_policy_kwargs({"activation_fn": name})["activation_fn"] is torch.nn.Tanh
    assert parse_policy_kwargs({"optimizer_class": "Adam"})["optimizer_class"] is torch.optim.Adam
    assert parse_policy_kwargs({"net_arch": {"pi": [64, 64], "vf": [32]}, "ortho_init": False}) == {
        "net_arch": {"pi": [64, 64], "vf": [32]},
        "ortho_init": False,
    }
    with pytest.raises(ValueError, match="YAML mapping"):  # the former string form
        parse_policy_kwargs("dict(net_arch=[64])")
    with pytest.raises(ValueError, match="NoSuchActivation"):
        parse_policy_kwargs({"activation_fn": "NoSuchActivation"})


def test_unknown_hyperparameter_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.yml"
    p.write_text("default:\n  n_stepz: 3\n")
    with pytest.raises(ValueError, match="n_stepz"):
        load_hyperparams("ppo", ENV_ID, p)


# ====================================================================== smoke run
def test_maskable_ppo_smoke_tensorboard_kpis_and_evaluate(tmp_path: Path) -> None:
    model_path = train(_args(tmp_path))
    run = tmp_path / "run"
    assert model_path == run / "model.zip" and model_path.is_file()
    assert (run / "best_model.zip").is_file()
    assert (
        sorted(p.name for p in (run / "checkpoints").glob("ckpt_*.zip"))[-1]
        == "ckpt_000000002048.zip"
    )
    assert not list(run.rglob("*.tmp")), "atomic writes left temp files"

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env_id"] == ENV_ID and cfg["algo"] == "maskable_ppo"
    assert cfg["hyperparams"]["n_steps"] == 256 and cfg["hyperparams"]["n_timesteps"] == 2048
    assert cfg["overrides"] == {"horizon_s": 3} and cfg["env_wrappers"] == []
    assert cfg["args"]["seed"] == 0 and cfg["eval_workload_seeds"] == [20_000]  # validation, not test
    for pkg in ("disagg_gym", "gymnasium", "stable_baselines3", "sb3_contrib", "torch", "numpy"):
        assert cfg["versions"][pkg]

    scalars = _scalars(run)
    for key in (
        "slo_attainment",
        "goodput_rps",
        "ttft_p99_s",
        "tpot_p99_s",
        "cost_per_1m_tokens_usd",
        "energy_per_request_j",
    ):
        assert f"kpi/{key}" in scalars, sorted(scalars)
        assert f"eval/kpi/{key}" in scalars, sorted(scalars)
    assert "rollout/ep_rew_mean" in scalars and "eval/mean_reward" in scalars
    assert "train/approx_kl" in scalars

    out_csv = tmp_path / "eval.csv"
    assert (
        cmd_evaluate(
            EvalArgs(
                env=ENV_ID,
                policy=f"sb3:{model_path}",
                episodes=1,
                out=str(out_csv),
                overrides=list(OVERRIDES),
            )
        )
        == 0
    )
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["workload_seed"] == "10000"
    assert rows[0]["invalid_actions"] == "0"  # masked policy never picks invalid actions
    assert float(rows[0]["requests_total"]) > 0


def test_ppo_smoke(tmp_path: Path) -> None:
    path = train(_args(tmp_path, algo="ppo", timesteps=512, eval_freq=0, progress_bar=False))
    out_csv = tmp_path / "ppo.csv"
    cmd_evaluate(
        EvalArgs(
            env=ENV_ID,
            policy=f"sb3:{path}",
            episodes=1,
            out=str(out_csv),
            overrides=list(OVERRIDES),
        )
    )
    assert len(list(csv.DictReader(out_csv.open()))) == 1


def test_budget_rounds_up_to_whole_rollouts(tmp_path: Path) -> None:
    # n_steps 256 x n_envs 2 = 512 per rollout: 520 requested -> ceil(520/512) = 2 rollouts = 1,024
    from stable_baselines3.common.callbacks import BaseCallback

    class BarTotal(BaseCallback):
        """Records the total SB3's progress bar shows (total_timesteps - num_timesteps at start)."""

        total = -1

        def _on_training_start(self) -> None:
            BarTotal.total = int(self.locals["total_timesteps"]) - int(self.model.num_timesteps)

        def _on_step(self) -> bool:
            return True

    path = train(_args(tmp_path, algo="ppo", timesteps=520, n_envs=2, eval_freq=0, progress_bar=False),
                 extra_callbacks=[BarTotal()])
    from stable_baselines3 import PPO

    assert BarTotal.total == 1024
    assert PPO.load(str(path)).num_timesteps == 1024
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["hyperparams"]["n_timesteps"] == 1024 and cfg["n_timesteps_requested"] == 520


def test_slim_checkpoint_drops_optimizer_moments_only(tmp_path: Path) -> None:
    import io
    import zipfile

    from disagg_gym_agents.callbacks import slim_checkpoint

    path = train(_args(tmp_path, timesteps=256, eval_freq=0, progress_bar=False))

    def parts(p: Path) -> tuple[bytes, dict]:
        with zipfile.ZipFile(p) as zf:
            opt = torch.load(io.BytesIO(zf.read("policy.optimizer.pth")), map_location="cpu")
            return zf.read("policy.pth"), opt

    weights, opt = parts(path)
    assert opt["state"]
    assert slim_checkpoint(path) is True
    weights_after, opt_after = parts(path)
    assert weights_after == weights and opt_after["state"] == {}
    assert len(opt_after["param_groups"]) == len(opt["param_groups"])
    assert slim_checkpoint(path) is False  # idempotent


def test_resume_continues_from_latest_checkpoint(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    train(_args(tmp_path, timesteps=512, eval_freq=0, checkpoint_freq=256, progress_bar=False))
    run = tmp_path / "run"
    assert (run / "checkpoints" / "ckpt_000000000512.zip").is_file()
    with pytest.raises(ValueError, match="already holds a run"):
        train(_args(tmp_path, timesteps=1024, eval_freq=0, progress_bar=False))
    path = train(
        _args(
            tmp_path,
            timesteps=1024,
            eval_freq=0,
            checkpoint_freq=256,
            progress_bar=False,
            resume=True,
        )
    )
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resumed_from"].endswith("ckpt_000000000512.zip") and cfg["start_timesteps"] == 512
    assert MaskablePPO.load(str(path)).num_timesteps == 1024
    assert (run / "checkpoints" / "ckpt_000000001024.zip").is_file()
    # TensorBoard continues the same run folder at the resumed timesteps.
    steps = [s for s, _ in _scalars(run)["train/approx_kl"]]
    assert max(steps) >= 1024 and len({p.parent for p in (run / "tb").rglob("events.*")}) == 1
    with pytest.raises(ValueError, match="no checkpoint"):
        train(_args(tmp_path, out=str(tmp_path / "empty"), resume=True))
    with pytest.raises(ValueError, match="algo 'maskable_ppo'"):
        train(_args(tmp_path, algo="ppo", timesteps=2048, resume=True))
    # another hyperparameter file: the checkpoint's own would train on while config.json
    # recorded the new ones
    other = tmp_path / "hp2.yml"
    other.write_text(FAST_HP.replace("learning_rate: 3.0e-4", "learning_rate: 0.5"))
    with pytest.raises(ValueError, match=r"other hyperparameters \(learning_rate: learning_rate 0.0003 -> 0.5\)"):
        train(_args(tmp_path, timesteps=2048, resume=True, hyperparams=str(other)))



def test_resume_at_the_largest_seed(tmp_path: Path) -> None:
    # a resume reseeds with seed + timesteps done, which overflowed numpy's 32-bit legacy seed
    seed = 2**32 - 1
    train(_args(tmp_path, seed=seed, timesteps=256, eval_freq=0, checkpoint_freq=128, progress_bar=False))
    path = train(_args(tmp_path, seed=seed, timesteps=512, eval_freq=0, checkpoint_freq=128, progress_bar=False,
                       resume=True))
    assert path.is_file()


# ====================================================================== evaluate
def test_evaluate_csv_heuristic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "sub" / "jsq.csv"
    rc = cmd_evaluate(
        EvalArgs(
            env=ENV_ID,
            policy="heuristic:jsq",
            episodes=2,
            seed_offset=7,
            out=str(out_csv),
            overrides=["horizon_s=5"],
        )
    )
    assert rc == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["workload_seed"] for r in rows] == ["7", "8"]
    assert [r["episode"] for r in rows] == ["0", "1"]
    for key in (
        "env_id",
        "policy",
        "return",
        "goodput_rps",
        "slo_attainment",
        "ttft_p99_s",
        "tpot_p99_s",
        "cost_per_1m_tokens_usd",
        "energy_per_request_j",
        "requests_total",
        "utilisation.prefill",
    ):
        assert key in rows[0], key
    assert rows[0]["policy"] == "heuristic:jsq"
    text = capsys.readouterr().out
    assert "goodput_rps" in text and "csv:" in text
    first = out_csv.read_bytes()
    cmd_evaluate(
        EvalArgs(
            env=ENV_ID,
            policy="heuristic:jsq",
            episodes=2,
            seed_offset=7,
            out=str(out_csv),
            overrides=["horizon_s=5"],
        )
    )
    assert out_csv.read_bytes() == first  # deterministic


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--policy", "heuristic:nope", "--episodes", "1"], "'nope'"),
        (["--policy", "sb3:does/not/exist.zip"], "does/not/exist.zip"),
        (["--env", "disagg/Nope-v0"], "disagg/Nope-v0"),
        (["--overrides", "horizon_s"], "horizon_s"),
    ],
)
def test_evaluate_bad_flags_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run_script(cmd_evaluate, EvalArgs, "evaluate.py", "", argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_evaluate_non_positive_episodes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_script(cmd_evaluate, EvalArgs, "evaluate.py", "", ["--episodes", "0"])
    assert exc.value.code != 0
    assert "expected a positive integer (got '0')" in capsys.readouterr().err


def test_train_bad_flags_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from disagg_gym_agents.cli import cmd_train

    rc = run_script(
        cmd_train, TrainArgs, "train.py", "", ["--env", "disagg/Nope-v0", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "disagg/Nope-v0" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        run_script(cmd_train, TrainArgs, "train.py", "", ["--algo", "dqn"])


def test_evaluate_script_subprocess_no_traceback(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "evaluate.py"), "--policy", "heuristic:nope"],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("evaluate.py: error: unknown heuristic 'nope'")
    assert "Traceback" not in proc.stderr


# ====================================================================== reward shaping
def test_queue_shaping_telescopes_and_keeps_kpis() -> None:
    import gymnasium as gym

    from disagg_gym_agents import make_policy
    from disagg_gym_agents.ppo import QueueShaping

    def episode(env: gym.Env) -> tuple[float, float, dict[str, object]]:
        policy = make_policy("round_robin", env)
        obs, _ = env.reset(seed=3, options={"workload_seed": 3})
        total = shaping = 0.0
        while True:
            action, _ = policy.predict(obs)
            obs, r, term, trunc, info = env.step(action)
            total += float(r)
            shaping += info.get("shaping", 0.0)
            if term or trunc:
                return total, shaping, info["episode_kpis"]

    raw = gym.make(ENV_ID, overrides={"horizon_s": 3})
    base_total, _, base_kpis = episode(raw)
    shaped = QueueShaping(gym.make(ENV_ID, overrides={"horizon_s": 3}), gamma=1.0, wait_weight=5.0)
    phi0 = None
    shaped.reset(seed=3, options={"workload_seed": 3})
    phi0 = shaped.potential()
    total, shaping, kpis = episode(shaped)
    assert kpis == base_kpis  # shaping changes rewards only
    assert total == pytest.approx(base_total + shaping)
    # gamma = 1: the shaping terms telescope to phi(end) - phi(start).
    assert shaping == pytest.approx(shaped.potential() - phi0, abs=1e-6)


def test_env_wrapper_key(tmp_path: Path) -> None:
    from disagg_gym_agents.hparams import QueueShaping, parse_env_wrappers

    spec = [{"disagg_gym_agents.ppo.QueueShaping": {"gamma": 0.99}}]
    assert parse_env_wrappers(spec) == [(QueueShaping, {"gamma": 0.99})]
    assert parse_env_wrappers("QueueShaping") == [(QueueShaping, {})]
    with pytest.raises(ValueError, match="os.system"):
        parse_env_wrappers("os.system")


def test_wall_clock_budget_stops_and_saves(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    path = train(
        _args(tmp_path, timesteps=1_000_000, eval_freq=0, progress_bar=False, max_wall_s=2.0)
    )
    steps = MaskablePPO.load(str(path)).num_timesteps
    assert 0 < steps < 1_000_000
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("ckpt_*.zip"))
    assert ckpts[-1].name == f"ckpt_{steps:012d}.zip"


# ====================================================================== issue #17
def test_resume_refuses_other_overrides_and_keeps_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from disagg_gym.errors import UserError

    quick = dict(eval_freq=0, checkpoint_freq=128, progress_bar=False)
    train(_args(tmp_path, timesteps=256, **quick))
    run = tmp_path / "run"
    first = json.loads((run / "config.json").read_text())
    assert [h["start_timesteps"] for h in first["history"]] == [0]
    # a changed env configuration is refused; config.json is left as it was
    with pytest.raises(UserError) as exc:
        train(_args(tmp_path, timesteps=512, resume=True, overrides=["horizon_s=4"], **quick))
    assert str(exc.value) == (
        f"--resume: {run} was trained with overrides {{'horizon_s': 3}} (got {{'horizon_s': 4}}); "
        "resume with the same --overrides or train into another --out"
    )
    assert json.loads((run / "config.json").read_text()) == first
    # the newest checkpoint is corrupt: resume says so and uses the newest readable one
    ckpts = sorted((run / "checkpoints").glob("ckpt_*.zip"))
    ckpts[-1].write_bytes(b"torn")
    train(_args(tmp_path, timesteps=512, resume=True, **quick))
    err = capsys.readouterr().err
    assert f"disagg-gym: warning: checkpoint {ckpts[-1]} is unreadable" in err
    assert f"disagg-gym: warning: resuming from {ckpts[-2]}" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resumed_from"] == str(ckpts[-2]) and cfg["start_timesteps"] == 128
    assert [h["start_timesteps"] for h in cfg["history"]] == [0, 128]
    assert cfg["history"][0] == first["history"][0]  # the original start time and arguments
    assert cfg["overrides"] == first["overrides"] == {"horizon_s": 3}


def test_train_bad_out_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from disagg_gym_agents.cli import cmd_train

    f = tmp_path / "f"
    f.write_text("x")
    rc = run_script(cmd_train, TrainArgs, "train.py", "", ["--out", str(f / "run"), "--timesteps", "64"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"train.py: error: --out {str(f / 'run')!r}: {str(f)!r} is a file, not a folder"


def test_evaluate_bad_out_fails_before_the_episodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import disagg_gym_agents.evaluation

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("episodes ran before --out was checked")

    monkeypatch.setattr(disagg_gym_agents.evaluation, "evaluate", boom)
    rc = run_script(cmd_evaluate, EvalArgs, "evaluate.py", "", ["--out", str(tmp_path)])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"evaluate.py: error: --out {str(tmp_path)!r}: is a directory, expected a file path"
    )


def test_evaluate_keeps_its_rows_when_the_write_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `evaluate --out` lost every episode it ran when the write failed
    import disagg_gym_agents.cli

    def denied(rows: object, path: object, leading: object = ()) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(disagg_gym_agents.cli, "write_csv", denied)  # what cmd_evaluate calls
    out = tmp_path / "e.csv"
    rc = run_script(cmd_evaluate, EvalArgs, "evaluate.py", "",
                    ["--episodes", "2", "--overrides", "horizon_s=2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    prefix = f"evaluate.py: error: --out: {str(out)!r}: Permission denied; the 2 episode rows were written to "
    assert err.startswith(prefix)
    kept = Path(err[len(prefix):])
    rows = list(csv.DictReader(kept.open()))
    kept.unlink()
    assert [r["workload_seed"] for r in rows] == ["10000", "10001"]


def test_sb3_spec_of_a_folder_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.zip").write_bytes(b"x")
    rc = run_script(cmd_evaluate, EvalArgs, "evaluate.py", "", ["--policy", f"sb3:{tmp_path}"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"evaluate.py: error: model path {str(tmp_path)!r} is a folder, expected a model .zip file; "
        f"did you mean sb3:{tmp_path / 'model.zip'}?"
    )
    rc = run_script(cmd_evaluate, EvalArgs, "evaluate.py", "", ["--policy", f"sb3:{tmp_path / 'model.zip'}"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"evaluate.py: error: model file {str(tmp_path / 'model.zip')!r} is not a model zip saved by SB3"
    )


def test_periodic_eval_env_runs_validation_seeds_not_test_seeds() -> None:
    # issue #15: train's periodic evaluation (and best_model.zip) must never see the test seeds
    from disagg_gym_agents.vec_env import make_vec_env

    venv = make_vec_env(ENV_ID, {"horizon_s": 1}, n_envs=1, seed=0, held_out=2)
    try:
        seen = []
        for _ in range(3):
            venv.reset()
            seen.append(venv.env_method("get_wrapper_attr", "workload_seed")[0])
        assert seen == [20_000, 20_001, 20_000]
    finally:
        venv.close()


def test_env_overrides_key_reaches_the_training_env_and_the_cli_wins(tmp_path: Path) -> None:
    from disagg_gym_agents.hparams import resolve_hyperparams

    p = tmp_path / "hp_overrides.yml"  # not hp.yml: _args writes that one
    p.write_text(FAST_HP + "  env_overrides: {env.outcome_unit: kilotoken, horizon_s: 5}\n")
    path = train(_args(tmp_path, hyperparams=str(p), timesteps=256, eval_freq=0, progress_bar=False))
    cfg = json.loads((path.parent / "config.json").read_text())
    # the entry's overrides, then --overrides (horizon_s=3) on top
    assert cfg["overrides"] == {"env.outcome_unit": "kilotoken", "horizon_s": 3}
    with pytest.raises(ValueError, match="env_overrides"):
        resolve_hyperparams({"env_overrides": ["env.outcome_unit=kilotoken"]})


class _Probe:
    """SB3 callbacks for the tests below (built per test: no state shared between tests)."""

    @staticmethod
    def flags(seen: set[bool]) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class Flag(BaseCallback):
            def _on_step(self) -> bool:
                seen.add(bool(torch.distributions.Distribution._validate_args))
                return True

        return Flag()

    @staticmethod
    def poison(at_step: int) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class Poison(BaseCallback):  # a diverged update, simulated: one weight becomes NaN
            def _on_step(self) -> bool:
                if self.num_timesteps == at_step:
                    with torch.no_grad():
                        next(self.model.policy.parameters()).view(-1)[0] = float("nan")
                return True

        return Poison()


def test_training_skips_distribution_checks_and_trains_the_same_weights(tmp_path: Path) -> None:
    # train() builds torch distributions unchecked (speed); the reference is the same run through
    # _train with torch's default parameter checks on: the weights and optimizer state must be
    # the same bytes, the checks must be off during training and restored afterwards.
    import zipfile

    from disagg_gym_agents import ppo

    dist = torch.distributions.Distribution
    assert dist._validate_args  # torch's default (tests do not run under python -O)
    checked: set[bool] = set()
    unchecked: set[bool] = set()
    ref_out = tmp_path / "ref"
    ref_out.mkdir()
    ref = ppo._train(_args(tmp_path, timesteps=512, eval_freq=0, progress_bar=False, out=str(ref_out)), ref_out,
                     [_Probe.flags(checked)])
    path = train(_args(tmp_path, timesteps=512, eval_freq=0, progress_bar=False),
                 extra_callbacks=[_Probe.flags(unchecked)])
    assert checked == {True} and unchecked == {False}
    assert dist._validate_args  # restored

    def member(p: Path, name: str) -> bytes:
        with zipfile.ZipFile(p) as zf:
            return zf.read(name)

    for name in ("policy.pth", "policy.optimizer.pth", "pytorch_variables.pth"):
        assert member(path, name) == member(ref, name), name


@pytest.mark.parametrize("at_step", [300, 512])  # mid-run (the next rollout samples NaN), last step
def test_a_diverged_run_is_one_line_and_writes_no_model(tmp_path: Path, at_step: int) -> None:
    from disagg_gym.errors import UserError

    with pytest.raises(UserError, match=r"training diverged at \d+ timesteps: .* not finite"):
        train(_args(tmp_path, timesteps=512, eval_freq=0, progress_bar=False),
              extra_callbacks=[_Probe.poison(at_step)])
    assert not (tmp_path / "run" / "model.zip").exists()
    assert torch.distributions.Distribution._validate_args  # restored on the way out


def test_a_shipped_hyperparameter_file_by_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--hyperparams maskable_ppo_noprior.yml` was "not found" outside the package folder
    from disagg_gym_agents.hparams import HYPERPARAMS_DIR, load_hyperparams

    monkeypatch.chdir(tmp_path)
    hp, _ = load_hyperparams("maskable_ppo", "disagg/SmallRoute-v3", "maskable_ppo_noprior.yml")
    want, _ = load_hyperparams("maskable_ppo", "disagg/SmallRoute-v3", str(HYPERPARAMS_DIR / "maskable_ppo_noprior.yml"))
    assert hp == want
    with pytest.raises(ValueError, match="hyperparameter file not found: 'nope.yml'"):
        load_hyperparams("maskable_ppo", "disagg/SmallRoute-v3", "nope.yml")
