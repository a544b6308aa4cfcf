"""The Ray benchmark gives exactly the local rows, resumes, and writes the same results.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from disagg_gym_agents.leaderboard import benchmark, plan_cells, read_results, run_cell  # noqa: E402
from disagg_gym_agents.ray_benchmark import benchmark_ray, run_cells_ray  # noqa: E402

OV = {"horizon_s": 4}
CONFIG = "disagg/SmallRoute-v3"


def test_four_cells_on_ray_equal_local_rows(ray_local: None) -> None:
    cells = plan_cells([CONFIG], ["heuristics"], ["test"])[:3]
    cells += plan_cells([CONFIG], ["jsq"], ["shift:load_up_20"])  # a split travels with its cell
    assert len(cells) == 4 and cells[-1].split == "shift:load_up_20"
    rows = run_cells_ray(cells, [10_000], OV, progress=False)
    assert rows == [run_cell(c, [10_000], OV) for c in cells]


def test_benchmark_ray_resumes_and_matches_local_file(ray_local: None, tmp_path: Path) -> None:
    agents = ["jsq", "round_robin", "kv_aware"]
    local = tmp_path / "local"
    benchmark(local, [CONFIG], agents, episodes=1, overrides=OV, plots=False, progress=False,
              splits=["test"])
    want = (local / "results.csv").read_text()

    dist = tmp_path / "ray"
    benchmark(dist, [CONFIG], agents[:1], episodes=1, overrides=OV, plots=False, progress=False,
              splits=["test"])
    benchmark_ray(dist, [CONFIG], agents, episodes=1, overrides=OV, plots=False, progress=False,
              splits=["test"])
    assert (dist / "results.csv").read_text() == want
    assert (dist / "LEADERBOARD.md").is_file()
    benchmark_ray(dist, [CONFIG], agents, episodes=1, overrides=OV, plots=False, progress=False,
              splits=["test"])
    assert len(read_results(dist / "results.csv")) == len(agents)


def test_a_failing_ray_task_is_the_local_backend_s_one_line(ray_local: None, tmp_path: Path) -> None:
    # a UserError in a task was Ray's 17-line remote traceback
    ck = tmp_path / "ck" / "SmallRoute-v3" / "seed0"
    ck.mkdir(parents=True)
    (ck / "model.zip").write_text("garbage")
    with pytest.raises(ValueError, match=r"is not a model zip saved by SB3") as exc:
        benchmark_ray(tmp_path / "out", [CONFIG], [f"sb3:bad={tmp_path / 'ck'}"], episodes=1, overrides=OV,
                      plots=False, progress=False, splits=["test"])
    assert "\n" not in str(exc.value) and "ray::" not in str(exc.value)
