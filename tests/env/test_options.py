"""``reset(options=...)`` validation (issue #17): one clear ``ValueError`` per bad option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from disagg_gym.env.options import check_reset_options
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym.errors import UserError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([("workload_seed", 1)], "reset options must be a dict (got list: [('workload_seed', 1)])"),
        ({"seed": 1}, "unknown reset option(s) ['seed']; expected workload_seed, trace_window, keep_records"),
        ({"keep_records": 1}, "keep_records must be true or false (got 1)"),
        ({"workload_seed": "abc"}, "workload_seed must be a non-negative int (got 'abc')"),
        ({"workload_seed": 1.0}, "workload_seed must be a non-negative int (got 1.0)"),
        ({"trace_window": 5}, "trace_window must be [start_s, end_s] (got 5)"),
        ({"trace_window": "ab"}, "trace_window must be [start_s, end_s] (got 'ab')"),
        ({"trace_window": [1, 2, 3]}, "trace_window must be [start_s, end_s] (got [1, 2, 3])"),
        ({"trace_window": ["a", None]}, "trace_window start_s must be a finite number >= 0 (got 'a')"),
        ({"trace_window": [float("nan"), None]}, "trace_window start_s must be a finite number >= 0 (got nan)"),
        ({"trace_window": [-1, None]}, "trace_window start_s must be a finite number >= 0 (got -1)"),
        ({"trace_window": [5, 5]}, "trace_window end_s must be null or a finite number > start_s=5 (got 5)"),
        ({"trace_window": [0, float("inf")]}, "trace_window end_s must be null or a finite number > start_s=0 (got inf)"),
        ({"trace_window": [0, "x"]}, "trace_window end_s must be null or a finite number > start_s=0 (got 'x')"),
    ],
)
def test_bad_options_are_one_clear_value_error(options: object, message: str) -> None:
    with pytest.raises(UserError) as exc:
        check_reset_options(options, "trace")
    assert str(exc.value) == message
    assert isinstance(exc.value, ValueError)


def test_good_options() -> None:
    assert check_reset_options(None, "poisson") == (None, None)
    assert check_reset_options({"workload_seed": 3}, "poisson") == (3, None)
    assert check_reset_options({"trace_window": (10, None)}, "trace") == (None, (10.0, None))
    assert check_reset_options({"trace_window": [0, 60.5], "workload_seed": 0}, "trace") == (0, (0.0, 60.5))


def test_env_reset_checks_options(tmp_path: Path) -> None:
    env = DisaggServingEnv("small-route", overrides={"horizon_s": 2})
    with pytest.raises(ValueError, match=r"trace_window needs a trace workload \(got workload.kind 'poisson'\)"):
        env.reset(seed=0, options={"trace_window": [0, 10]})
    with pytest.raises(ValueError, match="reset options must be a dict"):
        env.reset(seed=0, options=[1])  # type: ignore[arg-type]
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"timestamp": {1000 * i}, "input_length": 50, "output_length": 4}}\n' for i in range(20)))
    env = DisaggServingEnv(
        "small-route", overrides={"workload.kind": "trace", "workload.trace_path": str(trace), "horizon_s": 100}
    )
    env.reset(seed=0, options={"trace_window": [5, 10]})
    assert len(env.sim.source) == 5  # rows at 5, 6, 7, 8, 9 s
    env.close()


@pytest.mark.parametrize("warm", [0.0, 3.0])
def test_keep_records_keeps_the_episode_s_requests_and_nothing_else_changes(warm: float) -> None:
    # Without the option an env episode keeps streaming statistics only; with it the recorder
    # also holds one record per request finished after the reset (a warm-up's are not). The
    # episode itself, KPIs included, is the same (the option first switched the latency
    # percentiles to exact lists over the kept requests only: other p50/p99 and means).
    seen = {}
    for keep in (False, True):
        env = DisaggServingEnv("small-route", overrides={"horizon_s": 8, "env.warm_start_s": warm})
        env.reset(seed=0, options={"workload_seed": 0, "keep_records": keep})
        done, info = False, {}
        while not done:
            _, _, term, trunc, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
            done = term or trunc
        rec = env.recorder
        seen[keep] = (len(rec.records), rec.completed + rec.rejected, info["episode_kpis"])
        env.close()
    assert seen[False][0] == 0 and seen[True][2] == seen[False][2]
    kept, finished, _ = seen[True]
    assert 0 < kept <= finished and (kept == finished) == (warm == 0.0)
