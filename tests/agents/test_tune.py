"""scripts/tune.py: search space parsing, policy_kwargs keys, cost metrics, resume."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

import torch

from disagg_gym_agents.cli import add_dataclass_args

ROOT = Path(__file__).resolve().parents[2]


def _tune():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("tune_script", ROOT / "scripts" / "tune.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tune_script"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_space_and_candidates() -> None:
    t = _tune()
    space = t.parse_space(["policy_kwargs.prior_scale=0.0,20.0", "gamma=0.95"], only=True)
    assert space == {"policy_kwargs.prior_scale": [0.0, 20.0], "gamma": [0.95]}
    assert t.candidates("grid", 5, 0, space) == [
        {"policy_kwargs.prior_scale": 0.0, "gamma": 0.95},
        {"policy_kwargs.prior_scale": 20.0, "gamma": 0.95},
    ]
    full = t.parse_space(["gamma=0.9,0.99"])
    assert full["gamma"] == [0.9, 0.99] and "learning_rate" in full
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        t.parse_space(["gamma"])


def test_policy_kwargs_candidate_round_trips() -> None:
    from disagg_gym_agents.hparams import parse_policy_kwargs

    t = _tune()
    base = {"policy_kwargs": {"hidden": 64, "prior_scale": 20.0, "net_arch": [8], "activation_fn": "ReLU"}}
    hp = t.apply_candidate(base, {"policy_kwargs.prior_scale": 0.0, "gamma": 0.9})
    assert hp["gamma"] == 0.9
    pk = parse_policy_kwargs(hp["policy_kwargs"])
    assert pk == {"hidden": 64, "prior_scale": 0.0, "net_arch": [8], "activation_fn": torch.nn.ReLU}


def test_cost_metrics_are_lower_is_better() -> None:
    t = _tune()
    assert "cost_per_1m_good_tokens_usd" in t.LOWER_IS_BETTER
    assert "energy_per_good_request_j" in t.LOWER_IS_BETTER


def test_search_scores_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = _tune()
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, t.Args)
    argv = [
        "--env", "disagg/HybridCostRoute-v3", "--mode", "grid", "--trials", "1", "--only-space",
        "--space", "learning_rate=3.0e-4", "--timesteps", "64", "--eval-episodes", "1",
        "--overrides", "horizon_s=3", "--out", str(tmp_path / "tune"),
    ]
    assert t.main(parser.parse_args(argv)) == 0
    rows = list(csv.DictReader((tmp_path / "tune" / "trials.csv").open()))
    assert rows[0]["metric"] == "cost_per_1m_good_tokens_usd"
    assert float(rows[0]["score"]) > 0  # a finite cost, not NaN
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["trial"] == 0
    capsys.readouterr()
    assert t.main(parser.parse_args(argv)) == 0  # second run reuses the finished trial
    assert "reusing" in capsys.readouterr().out
    again = list(csv.DictReader((tmp_path / "tune" / "trials.csv").open()))
    assert again[0]["score"] == rows[0]["score"]
