"""Leaderboard statistics against independent oracles: scipy's trim_mean (rliable's IQM), a
binomial closed form for the stratified bootstrap, and rliable itself when it is installed."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from disagg_gym.errors import UserError
from disagg_gym_agents.leaderboard.stats import (
    is_win,
    iqm,
    paired_ratios,
    probability_of_improvement,
    score_of,
    run_bootstrap_ci,
    stratified_bootstrap_ci,
)


def test_iqm_is_scipy_trim_mean() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (1, 3, 4, 7, 8, 10, 33):
        x = rng.normal(size=n) * 5
        assert iqm(x) == pytest.approx(float(stats.trim_mean(x, 0.25)), rel=1e-12, abs=1e-12)


def test_iqm_by_hand() -> None:
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx(3.5)  # 8 values: drop 2 each end, mean of 2..5
    assert iqm([[7.0]]) == 7.0
    assert iqm([1, 2, 3, 10, 20]) == pytest.approx(5.0)  # 5 values: drop 1 each end, mean of 2, 3, 10
    # n*0.25 not an integer: cut the floor (scipy.stats.trim_mean, rliable), never round up
    assert iqm([1, 2, 30]) == pytest.approx(11.0)  # 3 values: 0.75 -> drop none
    assert iqm([70, 1, 2, 3, 4, 5, 6]) == pytest.approx(4.0)  # 7 values: 1.75 -> drop 1 each end


def _binom_quantile(n: int, q: float) -> int:
    """Smallest k with P(Binomial(n, 1/2) <= k) >= q."""
    acc = 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) / 2**n
        if acc >= q:
            return k
    return n


@pytest.mark.parametrize("task_bootstrap", [False, True])
def test_bootstrap_ci_matches_a_binomial_closed_form(task_bootstrap: bool) -> None:
    # Two runs (all-0 and all-1) over T tasks: each replicate draws, per task, two of the runs,
    # so the 2T resampled scores hold K ones with K ~ Binomial(2T, 1/2); sorted, the IQM keeps
    # positions cut..2T-cut-1, so IQM = clip(K - cut, 0, 2T - 2 cut) / (2T - 2 cut). Every column
    # is (0, 1), so resampling the tasks too changes nothing. T = 50 makes the 2.5% quantile
    # (K = 40, IQM 0.30) several atoms away from what a bootstrap that drew the runs once per
    # replicate instead of per task gives (0), and from the 5% quantile (K = 42, IQM 0.34).
    tasks = 50
    m = np.vstack([np.zeros(tasks), np.ones(tasks)])
    n, cut = 2 * tasks, int(0.25 * 2 * tasks)
    mid = n - 2 * cut

    def iqm_of(k: int) -> float:
        return min(max(k - cut, 0), mid) / mid

    assert iqm_of(_binom_quantile(n, 0.025)) == pytest.approx(0.30)  # the oracle itself
    assert iqm_of(_binom_quantile(n, 0.05)) == pytest.approx(0.34)
    lo, hi = stratified_bootstrap_ci(m, reps=20_000, confidence=0.95, seed=1, task_bootstrap=task_bootstrap)
    assert lo == pytest.approx(iqm_of(_binom_quantile(n, 0.025)), abs=1.0 / mid + 1e-9)
    assert hi == pytest.approx(iqm_of(_binom_quantile(n, 0.975)), abs=1.0 / mid + 1e-9)
    assert lo < 0.5 < hi


def test_bootstrap_ci_of_one_run_has_zero_width_without_task_bootstrap() -> None:
    m = np.array([[0.2, 0.9, 0.5, 0.7]])
    lo, hi = stratified_bootstrap_ci(m, task_bootstrap=False)
    assert lo == hi == pytest.approx(iqm(m))


def test_task_bootstrap_of_two_episodes_by_hand() -> None:
    # One run, two episodes a < b. Resampling the episodes gives (a,a), (a,b), (b,a), (b,b)
    # with probability 1/4, 1/2, 1/4 (resampling the one run changes nothing); two values keep
    # both in the IQM, so the statistic is a, (a+b)/2, b. The 2.5% quantile is a, the 97.5% b,
    # and the 20% / 80% quantiles (60% CI) are a and b too while 30%/70% (40% CI) are (a+b)/2.
    a, b = 0.9, 1.3
    m = np.array([[a, b]])
    assert stratified_bootstrap_ci(m, reps=4000) == pytest.approx((a, b))
    lo, hi = stratified_bootstrap_ci(m, reps=4000, confidence=0.4)
    assert lo == pytest.approx((a + b) / 2) and hi == pytest.approx((a + b) / 2)


def test_task_bootstrap_covers_episode_noise_of_a_single_run() -> None:
    # A deterministic heuristic (one run) now gets a CI from its episodes: ratios spread
    # 0.98..1.04 must not produce a zero-width interval (issue #15's MooncakeRdma "win").
    m = np.array([[0.98, 0.99, 1.0, 1.01, 1.02, 1.03, 1.04, 1.0, 0.99, 1.02]])
    lo, hi = stratified_bootstrap_ci(m)
    assert lo < iqm(m) < hi and lo < 1.01 and not is_win((lo, hi))


def test_paired_ratios_divide_by_the_reference_on_the_same_seed() -> None:
    runs = {"1": {10000: 2.0, 10001: 6.0, 10002: 1.0}, "0": {10000: 4.0, 10001: 3.0}}
    ref = {10000: 2.0, 10001: 3.0, 10002: 5.0}
    m, seeds = paired_ratios(runs, ref)
    assert seeds == [10000, 10001]  # 10002: run "0" lacks it
    assert m.tolist() == [[2.0, 1.0], [1.0, 2.0]]  # runs sorted: "0", then "1"
    m, seeds = paired_ratios({"": {1: 3.0, 2: 4.0}}, {1: 0.0, 2: 2.0})
    assert seeds == [2] and m.tolist() == [[2.0]]  # a zero reference has no ratio
    with pytest.raises(UserError, match="no workload seed"):
        paired_ratios({"": {1: 1.0}}, {2: 1.0})


def test_probability_of_improvement_by_hand() -> None:
    # Task 1: x runs (3, 1) vs y (2): pairs 3>2, 1<2 -> 1/2. Task 2: x (5, 5) vs y (5): ties -> 1/2.
    # Task 3: x (9, 8) vs y (1): both greater -> 1. Mean over tasks: (0.5 + 0.5 + 1) / 3.
    x = np.array([[3.0, 5.0, 9.0], [1.0, 5.0, 8.0]])
    y = np.array([[2.0, 5.0, 1.0]])
    assert probability_of_improvement(x, y) == pytest.approx(2.0 / 3.0)
    assert probability_of_improvement(y, y) == 0.5
    with pytest.raises(UserError):
        probability_of_improvement(x, np.ones((1, 2)))


def test_win_needs_the_lower_bound_above_1_01() -> None:
    assert not is_win((1.005, 1.2)) and not is_win((1.01, 1.2)) and is_win((1.0101, 1.02))


def test_scores_are_higher_is_better() -> None:
    assert score_of("goodput_rps", "2.5") == 2.5
    assert score_of("cost_per_1m_good_tokens_usd", 4.0) == 0.25
    assert score_of("energy_per_good_request_j", "") == 0.0
    assert score_of("energy_per_good_request_j", float("inf")) == 0.0


def test_against_rliable_when_installed() -> None:
    try:
        from rliable import library as rly
        from rliable import metrics
    except Exception as exc:  # noqa: BLE001 - absent, or (rliable 1.2.0 + arch 7.2 + pandas 3) broken on import
        if os.environ.get("DISAGG_REQUIRE_RLIABLE"):  # scripts/check_rliable.sh: a skip would hide the check
            raise
        pytest.skip(f"rliable not importable: {type(exc).__name__}: {exc} (scripts/check_rliable.sh runs it)")
    rng = np.random.default_rng(0)
    m = rng.normal(1.0, 0.2, size=(5, 6))
    assert iqm(m) == pytest.approx(float(metrics.aggregate_iqm(m)), rel=1e-12)
    _, cis = rly.get_interval_estimates({"a": m}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=20_000)
    lo, hi = stratified_bootstrap_ci(m, reps=20_000, task_bootstrap=False)
    assert lo == pytest.approx(float(cis["a"][0, 0]), abs=0.01)
    _, cis = rly.get_interval_estimates(
        {"a": m}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=20_000, task_bootstrap=True
    )
    lo, hi = stratified_bootstrap_ci(m, reps=20_000)
    assert lo == pytest.approx(float(cis["a"][0, 0]), abs=0.01)
    assert hi == pytest.approx(float(cis["a"][1, 0]), abs=0.01)
    y = rng.normal(1.0, 0.2, size=(1, 6))
    poi = metrics.probability_of_improvement(m, np.repeat(y, 5, axis=0))
    assert probability_of_improvement(m, y) == pytest.approx(float(poi), abs=1e-12)
    assert hi == pytest.approx(float(cis["a"][1, 0]), abs=0.01)


def test_summarise_ranks_against_the_best_non_upper_bound_heuristic_by_hand() -> None:
    """A hand-computed (config, split): the reference is the heuristic with the highest mean
    score that is not an upper bound, ratios pair on the workload seed (rows arrive in any
    order), the reported statistic is the IQM (not the mean) and agents rank by it."""
    from disagg_gym_agents.leaderboard.summary import summarise

    seeds = (10_000, 10_001, 10_002, 10_003)
    scores = {  # agent -> kind, upper bound, {train_seed: scores on seeds}
        "jsq": ("heuristic", False, {"": (10.0, 12.0, 8.0, 10.0)}),  # mean 10: the reference
        "rr": ("heuristic", False, {"": (6.0, 9.0, 16.0, 7.0)}),  # mean 9.5
        "oracle": ("heuristic", True, {"": (20.0, 20.0, 20.0, 20.0)}),  # mean 20, but an upper bound
        "ppo": ("sb3", False, {"1": (10.0, 18.0, 8.0, 9.0), "0": (12.0, 12.0, 12.0, 10.0)}),
    }
    rows = []
    for agent, (kind, ub, runs) in scores.items():
        for ts, vals in runs.items():
            for s, v in reversed(list(zip(seeds, vals))):  # rows in reverse seed order
                rows.append({"config": "c", "split": "test", "primary_metric": "goodput_rps",
                             "agent": agent, "agent_kind": kind, "upper_bound": str(ub),
                             "train_seed": ts, "eval_seed": str(s), "score": str(v), "policy": f"p:{agent}"})
    (cs,) = summarise(rows)
    assert cs.best_heuristic == "jsq" and cs.best_heuristic_score == 10.0
    by = {a.agent: a for a in cs.agents}
    assert [a.agent for a in cs.agents] == ["oracle", "ppo", "jsq", "rr"]  # by IQM, descending
    # ppo's ratios to jsq on the same seed: run "0" 1.2, 1.0, 1.5, 1.0; run "1" 1.0, 1.5, 1.0, 0.9.
    # Sorted: 0.9 1.0 1.0 1.0 1.0 1.2 1.5 1.5; IQM drops 2 per end: mean(1.0, 1.0, 1.0, 1.2) = 1.05,
    # while the plain mean is 9.1 / 8 = 1.1375. Best run: raw means 11.5 ("0") > 11.25 ("1").
    assert by["ppo"].iqm == pytest.approx(1.05) and by["ppo"].mean_score == pytest.approx(1.1375)
    assert by["ppo"].runs == 2 and by["ppo"].episodes == 4 and by["ppo"].best_run == "0"
    # P(improvement), per seed over the two runs against jsq (ties 1/2): 0.75, 0.75, 0.75, 0.25
    assert by["ppo"].prob_improvement == pytest.approx(0.625)
    # rr: 0.6, 0.75, 2.0, 0.7 -> IQM (one cut per end) 0.725, below jsq although its mean ratio
    # 4.05 / 4 = 1.0125 is above; oracle: 2, 5/3, 2.5, 2 -> IQM 2.0
    assert by["rr"].iqm == pytest.approx(0.725) and by["rr"].mean_score == pytest.approx(1.0125)
    assert by["oracle"].iqm == pytest.approx(2.0) and by["oracle"].upper_bound
    assert by["jsq"].iqm == 1.0 and by["jsq"].ci == (1.0, 1.0) and by["jsq"].prob_improvement == 0.5
    assert not by["jsq"].win and not by["rr"].win


def test_a_heuristic_run_on_fewer_seeds_cannot_become_the_reference() -> None:
    """A 2-episode cell (a user's first look) of a clone of the best heuristic, on its two
    easiest seeds, had the higher mean (12 > 10) and took the reference's place. By hand: the
    reference stays jsq (4 seeds); the clone is ranked on the 2 seeds it shares, ratios 1.0."""
    from disagg_gym_agents.leaderboard.summary import summarise

    seeds = (10_000, 10_001, 10_002, 10_003)
    jsq = (10.0, 12.0, 6.0, 12.0)
    rows = [{"config": "c", "split": "test", "primary_metric": "goodput_rps", "agent": a, "agent_kind": "heuristic",
             "upper_bound": "False", "train_seed": "", "eval_seed": str(s), "score": str(v), "policy": f"p:{a}"}
            for a, pairs in (("jsq", zip(seeds, jsq)), ("clone", [(10_001, 12.0), (10_003, 12.0)]))
            for s, v in pairs]
    (cs,) = summarise(rows)
    assert cs.best_heuristic == "jsq" and cs.best_heuristic_score == 10.0
    clone = next(a for a in cs.agents if a.agent == "clone")
    assert clone.episodes == 2 and clone.iqm == 1.0 and not cs.identical_episodes


def test_a_split_whose_episodes_are_all_alike_is_marked() -> None:
    # AzureTraceRoute's workload seeds replay one trace window: 10 identical episodes, whose
    # bootstrap over episodes adds nothing; the section says so
    from pathlib import Path

    from disagg_gym_agents.leaderboard.markdown import render_markdown
    from disagg_gym_agents.leaderboard.summary import summarise

    rows = [{"config": "c", "split": "test", "primary_metric": "goodput_rps", "agent": "jsq", "agent_kind": "heuristic",
             "upper_bound": "False", "train_seed": "", "eval_seed": str(s), "score": "7.0", "policy": "p:jsq"}
            for s in range(10_000, 10_010)]
    (cs,) = summarise(rows)
    assert cs.identical_episodes
    assert "Its episodes are identical" in render_markdown([cs], Path("."), {}, {})


def test_learning_verdict_loses_only_when_the_whole_ci_is_below_1() -> None:
    # One learned agent against jsq on 10 seeds, with hand-set per-seed ratios: a spread around
    # 1 whose CI straddles 1 is inconclusive (not "loses" on its lower bound or its IQM); 0.9
    # loses; a uniform 1.05 wins.
    from disagg_gym_agents.leaderboard.markdown import learning_verdict
    from disagg_gym_agents.leaderboard.summary import summarise

    def rows(ratios: list[float]) -> list[dict[str, str]]:
        base = {"config": "c", "split": "test", "primary_metric": "goodput_rps", "upper_bound": "False"}
        out = []
        for k, ratio in enumerate(ratios):
            s = 10_000 + k
            out.append({**base, "agent": "jsq", "agent_kind": "heuristic", "train_seed": "", "eval_seed": str(s),
                        "score": "10.0", "policy": "heuristic:jsq"})
            out.append({**base, "agent": "ppo", "agent_kind": "sb3", "train_seed": "0", "eval_seed": str(s),
                        "score": str(10.0 * ratio), "policy": "sb3:x"})
        return out

    spread = [0.8, 0.9, 1.2, 1.1, 0.95, 1.0, 0.85, 1.15, 1.0, 1.0]
    (cs,) = summarise(rows(spread))
    ppo = next(a for a in cs.agents if a.agent == "ppo")
    # IQM: mean(0.9, 0.95, 1.0, 1.0, 1.0, 1.1) = 0.9917, below 1, yet the CI straddles 1
    assert ppo.iqm == pytest.approx(5.95 / 6) and ppo.ci[0] < 1.0 < ppo.ci[1]
    assert learning_verdict(cs) == "inconclusive"
    assert learning_verdict(summarise(rows([0.9] * 10))[0]) == "loses"
    assert learning_verdict(summarise(rows([1.05] * 10))[0]) == "win"
    assert learning_verdict(summarise([r for r in rows(spread) if r["agent"] == "jsq"])[0]) == "not trained"


def test_the_ci_text_shows_which_side_of_1_its_bounds_lie() -> None:
    # "1.000 [1.000, 1.000] | loses (CI below 1)" (AzureTraceRoute at -20 % load)
    from disagg_gym_agents.leaderboard.markdown import iqm_ci_text

    assert iqm_ci_text(0.99996, (0.99994, 0.99998)) == "0.99996 [0.99994, 0.99998]"
    assert iqm_ci_text(1.02, (1.0101, 1.03)) == "1.0200 [1.0101, 1.0300]"  # a win: the lower bound above 1.01
    assert iqm_ci_text(0.946, (0.941, 0.949)) == "0.946 [0.941, 0.949]"
    assert iqm_ci_text(1.0, (1.0, 1.0)) == "1.000 [1.000, 1.000]"  # the reference


def test_run_bootstrap_on_one_replayed_episode_resamples_whole_seeds() -> None:
    """Three training seeds scoring 1, 2, 3 on ten copies of one episode. Resampling whole
    seeds, the IQM's exact distribution has 27 equally likely outcomes: all-1 (and all-3)
    each has probability 1/27 = 3.7 % > 2.5 %, so the 95 % interval is exactly [1, 3]. The
    per-column (stratified) bootstrap treats the copies as independent draws and is far
    narrower: what the identical-episode tables reported.
    """
    m = np.repeat(np.array([[1.0], [2.0], [3.0]]), 10, axis=1)
    assert run_bootstrap_ci(m, reps=20_000) == (1.0, 3.0)
    lo, hi = stratified_bootstrap_ci(m, reps=20_000)
    assert 1.5 <= lo and hi <= 2.5
    assert run_bootstrap_ci(m[:1]) == (1.0, 1.0)  # one run: nothing to resample
    with pytest.raises(UserError):
        run_bootstrap_ci(np.zeros((0, 3)))


def test_run_bootstrap_resamples_the_columns_too() -> None:
    """One run whose columns differ (a stochastic policy's own draws on one replayed episode):
    the columns are resampled, 27 equally likely outcomes, so the interval is [1, 3] too.
    """
    assert run_bootstrap_ci(np.array([[1.0, 2.0, 3.0]]), reps=20_000) == (1.0, 3.0)


def test_identical_episode_cells_use_the_run_bootstrap() -> None:
    """The reference scores the same on every seed (one replayed trace window): the learned
    agent's interval is the whole-seed bootstrap's, wider than the per-episode one.
    """
    from disagg_gym_agents.leaderboard.summary import summarise

    base = {"config": "c", "split": "test", "primary_metric": "goodput_rps", "upper_bound": "False"}
    rows = []
    for k in range(10):
        s = str(10_000 + k)
        rows.append({**base, "agent": "jsq", "agent_kind": "heuristic", "train_seed": "", "eval_seed": s,
                     "score": "10.0", "policy": "heuristic:jsq"})
        for seed, ratio in enumerate([0.8, 0.9, 1.0, 1.1, 1.2]):
            rows.append({**base, "agent": "ppo", "agent_kind": "sb3", "train_seed": str(seed), "eval_seed": s,
                         "score": str(10.0 * ratio), "policy": "sb3:x"})
    (cs,) = summarise(rows)
    ppo = next(a for a in cs.agents if a.agent == "ppo")
    m = np.repeat(np.array([[0.8], [0.9], [1.0], [1.1], [1.2]]), 10, axis=1)
    assert cs.identical_episodes and ppo.ci == run_bootstrap_ci(m)
    lo, hi = stratified_bootstrap_ci(m)
    assert ppo.ci[0] < lo and ppo.ci[1] > hi
