"""Optional extras (issue #20): a command whose extra is missing says which one, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disagg_gym import bench, extras
from disagg_gym.cli import main
from disagg_gym.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Pretends the named modules are not installed."""
    gone: set[str] = set()
    real = extras._find_spec
    monkeypatch.setattr(extras, "_find_spec", lambda name: None if name in gone else real(name))
    return gone


@pytest.mark.parametrize(
    ("extra", "module", "argv"),
    [
        ("rl", "torch", ["train", "--env", "disagg/SmallRoute-v3", "--timesteps", "64"]),
        ("rl", "stable_baselines3", ["evaluate", "--policy", "sb3:{model}", "--episodes", "1"]),
        ("rl", "torch", ["validate"]),
        ("rl", "tqdm", ["benchmark", "--configs", "disagg/SmallRoute-v3", "--out", "{tmp}"]),
        ("plots", "matplotlib", ["simulate", "--horizon", "1", "--plots", "{tmp}"]),
    ],
)
def test_missing_extra_is_named_in_one_line(
    extra: str, module: str, argv: list[str], without: set[str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if extras.missing(extra):
        pytest.skip(f"the [{extra}] extra is not installed (scripts/check_core_install.sh covers that case)")
    without.add(module)
    model = tmp_path / "model.zip"
    import zipfile

    with zipfile.ZipFile(model, "w") as z:
        z.writestr("data", "{}")
    args = [a.format(tmp=tmp_path / "out", model=model) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"disagg-gym: error: this needs the [{extra}] extra ({module} not installed): "
                   f'pip install "disagg-gym[{extra}]"']
    assert not (tmp_path / "out").exists()  # refused before any work


def test_benchmark_without_the_plots_extra_is_one_line_before_any_cell(
    without: set[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # [rl] without [plots]: every cell ran, then the plots raised ModuleNotFoundError
    if extras.missing("rl"):
        pytest.skip("the [rl] extra is not installed")
    without.add("matplotlib")
    out = tmp_path / "out"
    assert main(["benchmark", "--configs", "disagg/SmallRoute-v3", "--agents", "jsq", "--episodes", "1",
                 "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        "disagg-gym: error: the plots need the [plots] extra (matplotlib not installed): "
        'pip install "disagg-gym[plots]", or pass --no-plots')
    assert not out.exists()


def test_require_names_only_what_is_missing(without: set[str]) -> None:
    if extras.missing("rl") or extras.missing("plots"):
        pytest.skip("needs the [rl] and [plots] extras (scripts/setup.sh installs them)")
    extras.require("plots")
    without.update({"torch", "tqdm"})
    assert extras.missing("rl") == ["torch", "tqdm"]
    assert not extras.has("rl") and extras.has("rl", "stable_baselines3")
    with pytest.raises(UserError, match=r'\[rl\] extra \(torch not installed\)'):
        extras.require("rl", "torch", "stable_baselines3")


def test_bench_says_ppo_needs_the_rl_extra() -> None:
    res = {
        "machine": {"cpu": "x", "cores": 1, "python": "3", "numpy": "1", "disagg_gym": "0"},
        "cartpole": {"steps_per_s": 1.0}, "envs": {}, "simulate": [],
        "ppo": {"skipped": bench.PPO_SKIPPED},
    }
    assert 'needs the [rl] extra (pip install "disagg-gym[rl]")' in bench.to_markdown(res)


def test_core_modules_import_no_heavy_dependency() -> None:
    """The core commands' modules load without torch, SB3, matplotlib, tqdm or rich."""
    code = (
        "import sys\n"
        "import disagg_gym, disagg_gym.cli, disagg_gym.bench, disagg_gym.commands, disagg_gym.plots\n"
        "import disagg_gym_agents, disagg_gym_agents.commands, disagg_gym_agents.leaderboard\n"
        "from disagg_gym.cli import build_parser\n"
        "build_parser()\n"
        "heavy = {'torch', 'stable_baselines3', 'sb3_contrib', 'matplotlib', 'tensorboard', 'tqdm', 'rich'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.slow
def test_fresh_core_install(tmp_path: Path) -> None:
    """`pip install .` in a fresh venv without extras (PyPI needed; .ci/run runs the script too)."""
    res = subprocess.run(["bash", str(ROOT / "scripts" / "check_core_install.sh")], capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
