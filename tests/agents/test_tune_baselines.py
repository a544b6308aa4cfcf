"""disagg-gym tune-baselines: validation seeds only, the tuned file, the static-split search."""

from __future__ import annotations

from pathlib import Path

import pytest

from disagg_gym.cli import main
from disagg_gym.errors import UserError
from disagg_gym_agents import evaluation, tuning

OVER = {"horizon_s": 4.0, "workload.rate_per_s": 120}


def test_refuses_test_and_training_seeds() -> None:
    tuning.check_validation_seeds([20_000, 20_005])
    for bad in (10_000, 10_003, 0, 1_000_000):
        with pytest.raises(UserError, match=f"seed {bad} is"):
            tuning.check_validation_seeds([bad])
    with pytest.raises(UserError, match="a test seed"):
        tuning.tune("small-route", "jsq+ttft_guard", [10_000])


def test_tune_uses_only_validation_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[int] = []
    real = evaluation.run_episode

    def spy(policy, env, workload_seed, **kw):  # type: ignore[no-untyped-def]
        used.append(int(workload_seed))
        return real(policy, env, workload_seed, **kw)

    monkeypatch.setattr(tuning, "run_episode", spy)
    grid = [{"alpha": 0.5}, {"alpha": 4.0}]
    res = tuning.tune("disagg/SmallRoute-v3", "jsq+ttft_guard", tuning.validation_seeds(2), grid=grid, overrides=OVER)
    assert sorted(set(used)) == [20_000, 20_001] and len(used) == 4
    assert res["seeds"] == [20_000, 20_001]
    assert [c["params"] for c in res["candidates"]] == grid
    best = max(res["candidates"], key=lambda c: c["score"])
    assert res["params"] == best["params"] and res["score"] == best["score"]


def test_cli_writes_the_tuned_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tuned.yaml"
    argv = ["tune-baselines", "--config", "small-route", "--policy", "jsq+queue_guard", "--seeds", "1",
            "--set", "horizon_s=3", "--out", str(out)]
    assert main(argv) == 0
    entry = tuning.read_tuned(out)["small-route"]["jsq+queue_guard"]
    assert entry["seeds"] == [20_000] and entry["metric"] == "slo_tokens_per_s"
    assert len(entry["candidates"]) == len(tuning.ADMISSION_GRIDS["queue_guard"]["max_queued_requests"])
    assert tuning.tuned_params("small-route", "jsq+queue_guard", out) == entry["params"]
    assert tuning.tuned_params("small-route", "jsq+ttft_guard", out) == {}
    assert main(["tune-baselines", "--config", "small-route", "--policy", "jsq+nope", "--out", str(out)]) == 2
    assert "unknown admission controller 'nope'" in capsys.readouterr().err


def test_cli_split_step_is_a_coarse_static_split_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tuned.yaml"
    argv = ["tune-baselines", "--config", "energy-allocate", "--policy", "static_split", "--seeds", "1",
            "--split-step", "3", "--set", "horizon_s=2", "--out", str(out)]
    assert main(argv) == 0
    entry = tuning.read_tuned(out)["energy-allocate"]["static_split"]
    # hand-listed: the mask keeps 1..7 of the 8 prefilling: the multiples of 3 in it, its ends 1 and
    # 7, and the initial 4
    assert [c["params"] for c in entry["candidates"]] == [{"prefill_counts": {"h100-sxm": k}} for k in (1, 3, 4, 6, 7)]
    assert entry["split_step"] == 3
    with pytest.raises(SystemExit) as bad:
        main(argv[:-4] + ["--split-step", "0", "--out", str(out)])
    assert bad.value.code == 2
    assert "--split-step" in capsys.readouterr().err


def test_spillover_grid_holds_its_default_and_alpha_acts_only_with_on_demand_instances() -> None:
    grid = tuning.policy_grid("hybrid-cost-route", "spillover")
    assert {"alpha": 1.0} in grid and len(grid) == len({g["alpha"] for g in grid}) > 1
    # oracle: spillover only bursts to on-demand instances, so without them alpha changes nothing
    over = {"horizon_s": 3.0}
    lo, hi = (tuning.score_policy("small-route", "spillover", {"alpha": a}, [20_000], "slo_tokens_per_s", over)
              for a in (0.5, 2.0))
    assert lo == hi
    lo, hi = (tuning.score_policy("hybrid-cost-route", "spillover", {"alpha": a}, [20_000],
                                  "cost_per_1m_good_tokens_usd", {"horizon_s": 20.0}) for a in (0.5, 2.0))
    assert lo != hi


def test_tuned_file_has_no_yaml_anchors(tmp_path: Path) -> None:
    # the chosen params and its candidate's params are one dict: written twice, not as &id001 / *id001
    p = {"alpha": 0.75}
    entry = {"params": p, "score": 1.0, "metric": "slo_tokens_per_s", "seeds": [20_000],
             "candidates": [{"params": p, "score": 1.0}]}
    out = tuning.write_tuned({"small-route": {"jsq+ttft_guard": entry}}, tmp_path / "t.yaml")
    text = out.read_text()
    assert "&" not in text and "*" not in text and text.count("{alpha: 0.75}") == 2
    assert tuning.read_tuned(out)["small-route"]["jsq+ttft_guard"] == entry


def test_an_episode_with_no_slo_meeting_request_is_the_worst_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hand-set episode rows: split A meets no SLO on seed 20001 (the KPI is None, as the metrics
    # summary leaves J per good request when no request met its SLOs); split B is worse on seed
    # 20000 but never empty. The leaderboard scores an empty run 0 (worst), so B must win.
    rows = {("A", 20_000): 40.0, ("A", 20_001): None, ("B", 20_000): 90.0, ("B", 20_001): 95.0}

    def fake(policy, env, workload_seed, **kw):  # type: ignore[no-untyped-def]
        return {"energy_per_good_request_j": rows[(policy.tag, int(workload_seed))], "slo_tokens_per_s": None}

    def fake_policy(name, env, tag):  # type: ignore[no-untyped-def]
        return type("P", (), {"tag": tag})()

    monkeypatch.setattr(tuning, "run_episode", fake)
    monkeypatch.setattr(tuning, "make_policy", fake_policy)
    res = tuning.tune("energy-allocate", "static_split", [20_000, 20_001], metric="energy_per_good_request_j",
                      grid=[{"tag": "A"}, {"tag": "B"}])
    assert res["params"] == {"tag": "B"} and res["score"] == pytest.approx(92.5)
    assert res["candidates"][0]["score"] == float("inf")
    # a higher-is-better KPI left empty, or a KPI the episode lacks, is still one clear error
    with pytest.raises(UserError, match="slo_tokens_per_s"):
        tuning.tune("energy-allocate", "static_split", [20_000], grid=[{"tag": "A"}])
    with pytest.raises(UserError, match="no_such_kpi"):
        tuning.tune("energy-allocate", "static_split", [20_000], metric="no_such_kpi", grid=[{"tag": "A"}])


def test_a_lower_is_better_metric_picks_the_lowest_mean_and_ties_keep_the_earlier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hand-set per-seed energies: means A 70, B 55, C 55 (a tie with B), D 80. The lowest mean
    # wins and, tied, the earlier candidate (B) is kept; the higher-is-better slo_tokens_per_s
    # of the same candidates picks the highest mean (D: 9) and keeps A over C on their tie (5).
    energy = {("A", 20_000): 60.0, ("A", 20_001): 80.0, ("B", 20_000): 50.0, ("B", 20_001): 60.0,
              ("C", 20_000): 55.0, ("C", 20_001): 55.0, ("D", 20_000): 90.0, ("D", 20_001): 70.0}
    tokens = {("A", 20_000): 4.0, ("A", 20_001): 6.0, ("B", 20_000): 1.0, ("B", 20_001): 2.0,
              ("C", 20_000): 5.0, ("C", 20_001): 5.0, ("D", 20_000): 9.0, ("D", 20_001): 9.0}

    def fake(policy, env, workload_seed, **kw):  # type: ignore[no-untyped-def]
        key = (policy.tag, int(workload_seed))
        return {"energy_per_good_request_j": energy[key], "slo_tokens_per_s": tokens[key]}

    monkeypatch.setattr(tuning, "run_episode", fake)
    monkeypatch.setattr(tuning, "make_policy", lambda name, env, tag: type("P", (), {"tag": tag})())
    grid = [{"tag": t} for t in "ABCD"]
    res = tuning.tune("energy-allocate", "static_split", [20_000, 20_001], metric="energy_per_good_request_j",
                      grid=grid)
    assert [c["score"] for c in res["candidates"]] == [70.0, 55.0, 55.0, 80.0]
    assert res["params"] == {"tag": "B"} and res["score"] == 55.0
    res = tuning.tune("energy-allocate", "static_split", [20_000, 20_001], grid=[grid[i] for i in (0, 2, 1, 3)])
    assert res["params"] == {"tag": "D"} and res["score"] == 9.0
    res = tuning.tune("energy-allocate", "static_split", [20_000, 20_001], grid=[grid[i] for i in (0, 2, 1)])
    assert res["params"] == {"tag": "A"} and res["score"] == 5.0


def _refine(monkeypatch: pytest.MonkeyPatch, score_of, step: int) -> tuple[dict, list[dict[str, int]]]:  # type: ignore[no-untyped-def]
    calls: list[dict[str, int]] = []

    def score(config, policy, params, seeds, metric, overrides):  # type: ignore[no-untyped-def]
        c = dict(params["prefill_counts"])
        calls.append(c)
        return [float(score_of(c["h100-sxm"], c["a100-80gb"]))]

    monkeypatch.setattr(tuning, "score_policy", score)
    return tuning.tune("large-joint", "static_split", [20_000], split_step=step, refine=True), calls


@pytest.mark.parametrize("step", [3, 5, 6, 7, 8])
def test_refine_finds_a_one_peak_score_from_any_coarse_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    # Oracle: one peak at H100 prefill 14, A100 prefill 20 on LargeJoint's 31 x 31 allowed
    # splits (1..31 per type), falling steeply above 14 and gently below it (asymmetric, so a
    # search that halves the step too fast stops one short of the peak).
    def score_of(h: int, a: int) -> float:
        return -(14 - h if h <= 14 else 10 * (h - 14)) - abs(a - 20)

    res, calls = _refine(monkeypatch, score_of, step)
    assert res["params"] == {"prefill_counts": {"h100-sxm": 14, "a100-80gb": 20}} and res["score"] == 0.0
    assert res["split_step"] == step and res["refine"] is True
    assert len(calls) < 961 // 4
    assert len({tuple(sorted(c.items())) for c in calls}) == len(calls)  # nothing scored twice
    assert all(1 <= k <= 31 for c in calls for k in c.values())
    assert [c["params"]["prefill_counts"] for c in res["candidates"]] == calls


def test_refine_ends_on_a_local_optimum_of_a_coupled_score(monkeypatch: pytest.MonkeyPatch) -> None:
    # A score coupled across the two counts (a ridge 2h + a = 45): the search need not find the
    # grid's best, but it must stop only where every allowed neighbour was scored lower or equal.
    def score_of(h: int, a: int) -> float:
        return -((2 * h + a - 45) ** 2) - 0.05 * (h - 10) ** 2

    res, calls = _refine(monkeypatch, score_of, 8)
    best = res["params"]["prefill_counts"]
    h, a = best["h100-sxm"], best["a100-80gb"]
    scored = {(c["h100-sxm"], c["a100-80gb"]) for c in calls}
    for dh in (-1, 0, 1):
        for da in (-1, 0, 1):
            n = (h + dh, a + da)
            if 1 <= n[0] <= 31 and 1 <= n[1] <= 31:
                assert n in scored and score_of(*n) <= res["score"]
    assert res["score"] == score_of(h, a) == max(score_of(*c) for c in scored)


def test_refine_needs_a_coarse_static_split_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tuned.yaml"
    for extra in (["--policy", "static_split"], ["--policy", "jsq+ttft_guard", "--split-step", "4"]):
        assert main(["tune-baselines", "--config", "large-joint", "--refine", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert "--refine" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(UserError, match="refine: needs policy static_split .*got policy 'jsq\\+ttft_guard'"):
        tuning.tune("large-joint", "jsq+ttft_guard", [20_000], refine=True)


def _extend(monkeypatch: pytest.MonkeyPatch, policy: str, score_of) -> tuple[dict, list]:  # type: ignore[no-untyped-def]
    calls: list = []

    def score(config, pol, params, seeds, metric, overrides=None):  # type: ignore[no-untyped-def]
        (v,) = params.values()
        calls.append(v)
        out = score_of(v)
        if out is None:
            raise UserError(f"{pol}: refuses {v}")
        return [out] * len(seeds)

    monkeypatch.setattr(tuning, "score_policy", score)
    return tuning.tune("small-route", policy, [20_000], "slo_tokens_per_s"), calls


def test_a_best_value_at_the_low_edge_extends_the_grid_until_it_is_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    # peak at 1/3: the grid 0.5, 0.75, ... continues 0.333 (best), 0.222 (worse): stop
    res, calls = _extend(monkeypatch, "jsq+ttft_guard", lambda a: -abs(a - 1 / 3))
    assert calls == [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 0.333, 0.222]
    assert res["params"] == {"alpha": 0.333}
    assert [c["params"]["alpha"] for c in res["candidates"]] == calls


def test_the_extension_is_capped_and_a_refused_value_ends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # monotone: six values past the edge, then the cap (0.5 -> 0.333 -> 0.222 -> ... -> 0.0439)
    res, calls = _extend(monkeypatch, "jsq+ttft_guard", lambda a: -a)
    assert calls[7:] == [0.333, 0.222, 0.148, 0.0987, 0.0658, 0.0439] and res["params"] == {"alpha": 0.0439}
    # high edge of an integer grid: 1, 2, 4 -> 8 (refused by the policy: the search ends on 4)
    res, calls = _extend(monkeypatch, "splitwise", lambda b: None if b > 4 else float(b))
    assert calls == [1, 2, 4, 8] and res["params"] == {"max_borrow": 4}
    assert [c["params"] for c in res["candidates"]] == [{"max_borrow": b} for b in (1, 2, 4)]
    # an inside optimum, a two-parameter grid and an explicit grid are never extended
    _, calls = _extend(monkeypatch, "jsq+queue_guard", lambda q: -abs(q - 8))
    assert calls == [2, 4, 8, 16, 32, 64]
    monkeypatch.setattr(tuning, "score_policy", lambda c, p, params, seeds, m, o=None: [-sum(params.values())])
    assert len(tuning.tune("small-route", "jsq+mooncake", [20_000])["candidates"]) == 12
    res = tuning.tune("small-route", "jsq+ttft_guard", [20_000], grid=[{"alpha": 0.5}, {"alpha": 1.0}])
    assert len(res["candidates"]) == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("small-route: [\n", "line 2: invalid YAML: expected the node content, but found '<stream end>'"),
        ("small-route: 5\n", "key 'small-route': expected a mapping of policy -> tuned entry (got 5)"),
        ("small-route:\n", "key 'small-route': expected a mapping of policy -> tuned entry (got None)"),
        ("small-route: {jsq+queue_guard: 3}\n", "key 'small-route.jsq+queue_guard': expected a tuned entry mapping (got 3)"),
    ],
)
def test_a_malformed_out_file_fails_before_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    # it failed only after every candidate had run (losing the search), `small-route: 5` with a traceback
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the search ran before --out was read")

    monkeypatch.setattr(tuning, "tune", boom)
    out = tmp_path / "tuned.yaml"
    out.write_text(text)
    rc = main(["tune-baselines", "--config", "small-route", "--policy", "jsq+queue_guard", "--seeds", "1",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and "Traceback" not in captured.err
    assert captured.err.strip() == f"disagg-gym: error: {out}: {problem}"
    assert out.read_text() == text  # left as it was


def test_more_seeds_than_the_validation_range_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --seeds 1e9 built a list of a billion seeds first (MemoryError traceback)
    rc = main(["tune-baselines", "--config", "small-route", "--policy", "jsq+queue_guard", "--seeds", "1000000000",
               "--out", str(tmp_path / "t.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == "disagg-gym: error: --seeds must be at most 980000, the validation seeds 20000..999999 (got 1000000000)"


def test_cli_says_when_a_policy_has_nothing_to_tune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a new admission controller or allocator without a grid was "tuned" silently at its defaults
    out = tmp_path / "tuned.yaml"
    argv = ["tune-baselines", "--config", "small-route", "--policy", "jsq", "--seeds", "1", "--set", "horizon_s=2",
            "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("disagg-gym: warning: jsq has no parameter grid")
    assert "on seeds [20000]" in captured.out
    assert main([a if a != "1" else "5" for a in argv]) == 0
    assert "on 5 seeds 20000-20004" in capsys.readouterr().out


def test_an_interrupted_tuning_keeps_every_finished_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C during the second policy's search used to lose the first one's result
    real = tuning.tune

    def second_interrupted(name, policy, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if policy == "jsq+ttft_guard":
            raise KeyboardInterrupt
        return real(name, policy, *a, **kw)

    monkeypatch.setattr(tuning, "tune", second_interrupted)
    out = tmp_path / "t.yaml"
    assert main(["tune-baselines", "--config", "small-route", "--policy", "jsq+queue_guard", "--policy",
                 "jsq+ttft_guard", "--seeds", "1", "--set", "horizon_s=3", "--out", str(out)]) == 130
    tuned = tuning.read_tuned(out)
    assert list(tuned["small-route"]) == ["jsq+queue_guard"]
    # an unknown config is named before any search
    assert main(["tune-baselines", "--config", "small-route", "--config", "nope", "--policy", "jsq+queue_guard",
                 "--seeds", "1", "--out", str(tmp_path / "u.yaml")]) == 2
    assert not (tmp_path / "u.yaml").exists()
