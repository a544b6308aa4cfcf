"""What a newcomer meets (issue #20): one naming scheme, self-explaining output, help, plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from disagg_gym.cli import build_parser, main
from disagg_gym.errors import UserError
from disagg_gym.paths import configs_dir

SMALL_YAML = yaml.safe_load((configs_dir() / "small-route.yaml").read_text())
SMALL_ID = "disagg/SmallRoute-v3"  # the id README and docs/envs.md name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _strip_wall(s: dict) -> dict:
    return {k: v for k, v in s.items() if k != "wall_s"}


# ---------------------------------------------------------------- one naming scheme
def test_the_yaml_version_is_the_id_this_file_names() -> None:
    assert SMALL_ID.endswith(f"-v{SMALL_YAML['version']}")


@pytest.mark.parametrize("name", [SMALL_ID, f"disagg_gym:{SMALL_ID}"])
def test_simulate_config_takes_env_ids(capsys: pytest.CaptureFixture[str], name: str) -> None:
    rc, out, _ = run(capsys, "simulate", "--config", "small-route", "--horizon", "3", "--json")
    assert rc == 0
    by_name = json.loads(out)
    rc, out, _ = run(capsys, "simulate", "--config", name, "--horizon", "3", "--json")
    assert rc == 0
    by_id = json.loads(out)
    assert by_id["scenario"] == "small-route" and by_id["requests_total"] > 0
    assert _strip_wall(by_id) == _strip_wall(by_name)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("disagg/SmallRoute-v0",
         f"disagg-gym: error: env id disagg/SmallRoute-v0 is deprecated (its dynamics, reward or workload changed: docs/envs.md#versioning); use {SMALL_ID}"),
        ("disagg/SmallRoute-v9", f"disagg-gym: error: env id disagg/SmallRoute-v9 does not exist; use {SMALL_ID}"),
        ("SmallRoute-v3", f"disagg-gym: error: unknown env id 'SmallRoute-v3'; did you mean '{SMALL_ID}'?"),
    ],
)
def test_simulate_old_or_partial_ids_are_one_line_errors(capsys: pytest.CaptureFixture[str], value: str, message: str) -> None:
    rc, out, err = run(capsys, "simulate", "--config", value, "--horizon", "3")
    assert rc == 2 and out == ""
    assert err.strip() == message


def test_simulate_names_the_config_of_a_variant_id(capsys: pytest.CaptureFixture[str]) -> None:
    short = SMALL_ID.replace("SmallRoute-", "SmallRoute-short-")  # the variants: short: entry
    rc, out, err = run(capsys, "simulate", "--config", short, "--horizon", "3")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "is the 'short' variant of config 'small-route'" in err and "--config small-route" in err


def test_env_id_commands_take_config_names() -> None:
    from disagg_gym_agents.base import check_env_id

    assert check_env_id("small-route") == SMALL_ID
    assert check_env_id(SMALL_ID) == SMALL_ID
    assert check_env_id(f"disagg_gym:{SMALL_ID}") == SMALL_ID
    with pytest.raises(UserError, match=f"deprecated .*; use {SMALL_ID}$"):
        check_env_id("disagg/SmallRoute-v0")
    with pytest.raises(UserError, match="unknown env id or config 'nope'"):
        check_env_id("nope")


def test_evaluate_takes_a_config_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("disagg_gym_agents")
    out_csv = tmp_path / "e.csv"
    rc, out, err = run(capsys, "evaluate", "--env", "small-route", "--policy", "heuristic:jsq", "--episodes", "1",
                       "--overrides", "horizon_s=3", "--out", str(out_csv), "--json")
    assert rc == 0, err
    # the config name resolved to SmallRoute-v3; the short horizon makes it that id's custom one
    env_id = json.loads(out)["env_id"]
    assert env_id.startswith(SMALL_ID.removesuffix("-v3") + "-custom-") and env_id.endswith("-v3")
    assert out_csv.read_text().splitlines()[1].startswith(f"{env_id},")


@pytest.mark.parametrize("command", ["benchmark", "validate"])
def test_benchmark_and_validate_configs_take_config_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    lb = pytest.importorskip("disagg_gym_agents.leaderboard.cli")
    seen: list[list[str]] = []
    func = "cmd_benchmark" if command == "benchmark" else "cmd_validate"
    monkeypatch.setattr(lb, func, lambda args: seen.append(list(args.configs)) or 0)
    extra = ["--out", str(tmp_path)] if command == "benchmark" else []
    rc, _, _ = run(capsys, command, "--configs", "small-route", f"disagg_gym:{SMALL_ID}", "hetero-route", *extra)
    assert rc == 0 and seen == [[SMALL_ID, SMALL_ID, "disagg/HeteroRoute-v3"]]


def test_list_shows_both_names(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    row = next(line for line in out.splitlines() if line.startswith(SMALL_ID))
    assert row.split()[1] == "small-route"


def test_list_names_the_registered_training_variants(capsys: pytest.CaptureFixture[str]) -> None:
    # the 14 -short / -fine ids were registered but listed nowhere
    import gymnasium as gym

    rc, out, _ = run(capsys, "list", "--json")
    variants = [v for e in json.loads(out) for v in e["variants"]]
    # 12 route configs with -short, the 2 allocation configs with -fine (docs/envs.md)
    assert len(variants) == 14 and all(v in gym.registry for v in variants)
    assert "disagg/SmallRoute-short-v3" in variants and "disagg/HeteroAllocate-fine-v5" in variants
    rc, out, _ = run(capsys, "list")
    assert all(v in out.splitlines()[-1] for v in variants)


# ---------------------------------------------------------------- simulate explains itself
def test_simulate_states_slos_utilisation_and_next_steps(capsys: pytest.CaptureFixture[str]) -> None:
    w = SMALL_YAML["workload"]
    rc, out, _ = run(capsys, "simulate", "--horizon", "3")
    assert rc == 0
    slo_line = next(line for line in out.splitlines() if line.startswith("SLOs"))
    assert f"TTFT <= {w['slo_ttft_s']:g} s + {w['slo_ttft_per_1k_prompt_s']:g} s per 1k prompt tokens" in slo_line
    assert f"TPOT <= {w['slo_tpot_s'] * 1e3:g} ms per output token" in slo_line
    assert out.splitlines()[0].startswith(f"small-route, {w['kind']} {w['rate_per_s']:g} req/s")
    assert "utilisation = share of the run each instance spent computing" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("next") and "--json" in last and "--plots DIR" in last
    assert "disagg-gym list --policies" in last
    rc, out, _ = run(capsys, "simulate", "--horizon", "3", "--json")
    s = json.loads(out)
    assert s["slo"] == {"ttft_s": w["slo_ttft_s"], "ttft_per_1k_prompt_s": w["slo_ttft_per_1k_prompt_s"],
                        "tpot_s": w["slo_tpot_s"]}


def test_simulate_title_names_the_replayed_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [f"2023-11-16 18:15:{i:02d}.0000000,{500 + i},{20 + i % 7}" for i in range(20)]
    trace = tmp_path / "my_trace.csv"
    trace.write_text("\n".join(rows) + "\n")
    rc, out, _ = run(capsys, "simulate", "--trace", str(trace), "--rate-scale", "4")
    assert rc == 0
    assert out.splitlines()[0].startswith("small-route, replaying my_trace.csv x4 ")
    rc, out, _ = run(capsys, "simulate", "--trace", str(trace), "--rate-scale", "4", "--json")
    assert json.loads(out)["workload"] == "replaying my_trace.csv x4"


def test_predict_echoes_its_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "64",
            "--length", "2048"]
    rc, out, _ = run(capsys, *args, "--json")
    res = json.loads(out)
    assert rc == 0
    assert res["inputs"] == {"gpu": "h100-sxm", "model": "llama-3.1-8b", "phase": "decode", "batch": 64,
                             "length": 2048, "tp": 1, "cost_model": "roofline"}
    rc, out, _ = run(capsys, *args)
    assert rc == 0
    line = out.strip()
    for word in ("decode", "llama-3.1-8b", "h100-sxm", "tp 1", "64", "2,048", f"{res['ms']:.4f} ms"):
        assert word in line, word
    rc, out, _ = run(capsys, "predict", "--phase", "kv_transfer", "--link", "nvlink", "--bytes", "1048576")
    assert rc == 0 and out.startswith("KV transfer of 1,048,576 bytes over nvlink: ")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), "(the command itself)", helps.get(name)
                yield from _walk(sub, (*path, name))
        else:
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_flag_and_command_has_help() -> None:
    seen = list(_walk(build_parser(), ("disagg-gym",)))
    assert len(seen) > 60  # every command's flags were walked
    missing = [f"{' '.join(p)} {flag}" for p, flag, text in seen
               if not (text or "").strip() or text == argparse.SUPPRESS]
    assert not missing, missing


def test_list_policies_is_a_table_unless_json(capsys: pytest.CaptureFixture[str]) -> None:
    from disagg_gym.cluster.policies import ALLOCATORS, ROUTERS

    rc, out, _ = run(capsys, "list", "--policies", "--json")
    data = json.loads(out)
    assert rc == 0 and data["routers"] == ROUTERS.names() and data["allocators"] == ALLOCATORS.names()
    rc, out, _ = run(capsys, "list", "--policies")
    assert rc == 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    lines = out.splitlines()
    for name in ROUTERS.names():
        assert any(line.split()[:1] == [name] for line in lines), name
    assert lines[0].startswith("routers:")


# ---------------------------------------------------------------- plots
def _rows(n: int = 50) -> list[dict[str, float]]:
    return [{"t_s": float(i), "prefill_queue_tokens": 100.0 * (i % 7), "prefill_queue_requests": i % 3,
             "decode_batch": 5.0, "decode_waiting": 5.0, "kv_used_frac_prefill": 0.3, "kv_used_frac_decode": 0.3,
             "transfers_in_flight": i % 2, "n_prefill": 2, "n_decode": 2} for i in range(n)]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_timeline_panels_are_labelled_and_legends_stay_off_the_data() -> None:
    plots = pytest.importorskip("disagg_gym.plots")
    pytest.importorskip("matplotlib")
    fig = plots.timeline_figure(_rows(), "t")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = fig.axes
        for ax in axes:
            label = ax.get_ylabel()
            assert "(" in label and ")" in label, f"y-label without a unit: {label!r}"
            leg = ax.get_legend()
            assert leg is not None
            for other in axes:
                assert not _overlap(leg.get_window_extent(renderer), other.get_window_extent(renderer))
        kv = next(ax for ax in axes if "KV memory" in ax.get_ylabel())
        assert "fraction" in kv.get_ylabel() and "0-1" in kv.get_ylabel()
        # equal series (decode batch = waiting, prefill KV = decode KV, 2 = 2 instances) stay
        # distinguishable: different dash, width or z-order
        for ax in axes:
            lines = ax.get_lines()
            for i, a in enumerate(lines):
                for b in lines[i + 1:]:
                    if np.array_equal(a.get_ydata(), b.get_ydata()):
                        assert (a.get_linestyle(), a.get_linewidth()) != (b.get_linestyle(), b.get_linewidth())
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_latency_cdf_marks_the_slos() -> None:
    plots = pytest.importorskip("disagg_gym.plots")
    pytest.importorskip("matplotlib")
    data = {"a": {"ttft": [0.1, 0.2, 0.5], "tpot": [0.01, 0.02], "e2e": [1.0, 2.0]}}
    fig = plots.latency_cdf_figure({**data, "b": data["a"]}, "t", slo={"ttft_s": 0.4, "tpot_s": 0.04})
    try:
        ttft_ax, tpot_ax, e2e_ax = fig.axes
        def verticals(ax):
            return sorted({float(line.get_xdata()[0]) for line in ax.get_lines()
                           if len(set(np.asarray(line.get_xdata(), dtype=float))) == 1})
        assert verticals(ttft_ax) == [0.4] and verticals(tpot_ax) == [0.04] and verticals(e2e_ax) == []
        a, b = ttft_ax.get_lines()[:2]  # identical CDFs of two runs: both visible
        assert a.get_linestyle() != b.get_linestyle() and a.get_zorder() != b.get_zorder()
        labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert "TTFT SLO 0.4 s" in labels and "TPOT SLO 0.04 s" in labels
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


# ---------------------------------------------------------------- rgb_array frames
def test_font_glyphs_are_distinct() -> None:
    from disagg_gym.env.render import FONT

    shapes = {}
    for ch, g in FONT.items():
        assert g.shape == (5, 3), ch
        key = g.tobytes()
        assert key not in shapes or ch == " ", f"{ch!r} looks like {shapes.get(key)!r}"
        shapes[key] = ch


def test_rgb_frames_show_time_and_labels_at_a_constant_size() -> None:
    import gymnasium as gym

    import disagg_gym  # noqa: F401
    from disagg_gym.env.render import HEADER_H, text_mask

    env = gym.make(SMALL_ID, overrides={"horizon_s": 5}, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    t0 = env.unwrapped.cluster.engine.now
    for _ in range(30):
        env.step(env.unwrapped.action_for(route=(0, 2)) if env.unwrapped.task == "route" else env.action_space.sample())
    second = env.render()
    t1 = env.unwrapped.cluster.engine.now
    env.close()
    assert t1 > t0 and first.shape == second.shape
    # the header's first line is the simulated time, drawn in black from (2, 2)
    for img, t in ((first, t0), (second, t1)):
        mask = text_mask(f"SIM TIME {t:.2f} S", 2)
        crop = img[2:2 + mask.shape[0], 2:2 + mask.shape[1]]
        ink = (crop == 0).all(axis=2)
        assert (ink == mask).all()
    assert not (first[:HEADER_H] == second[:HEADER_H]).all()
    labels = text_mask("PREFILL QUEUE", 2)
    col = first.shape[1] // 4
    crop = first[15:15 + labels.shape[0], col + 2:col + 2 + labels.shape[1]]
    assert ((crop != 255).any(axis=2) == labels).all()


def test_train_ends_with_tensorboard_and_next_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ppo = pytest.importorskip("disagg_gym_agents.ppo")
    seen = []

    def fake_train(targs):
        seen.append(targs.env)
        return Path(targs.out) / "model.zip"

    monkeypatch.setattr(ppo, "train", fake_train)
    out_dir = tmp_path / "run"
    rc, out, _ = run(capsys, "train", "--env", "small-route", "--out", str(out_dir))
    assert rc == 0 and seen == [SMALL_ID]
    lines = out.strip().splitlines()
    assert lines[0] == f"model: {out_dir / 'model.zip'}"
    assert lines[1].startswith(f"tensorboard logs: {out_dir / 'tb'}")
    assert lines[2] == (f"next: disagg-gym evaluate --env {SMALL_ID} --policy sb3:{out_dir / 'model.zip'} "
                        f"--episodes 5 --out {out_dir / 'eval.csv'}")
    # Overrides change the env's spaces: the next command carries them (quoted for the shell).
    rc, out, _ = run(capsys, "train", "--env", "small-route", "--out", str(out_dir),
                     "--overrides", "env.obs_mode=padded", "--overrides", "env.max_instances=8")
    assert rc == 0
    assert out.strip().splitlines()[2] == (
        f"next: disagg-gym evaluate --env {SMALL_ID} --policy sb3:{out_dir / 'model.zip'} --episodes 5 "
        f"--overrides env.obs_mode=padded --overrides env.max_instances=8 --out {out_dir / 'eval.csv'}")
    # Trained on the short variant: evaluated on the full-horizon id (docs/envs.md); run as
    # .venv/bin/disagg-gym, the suggestions name that path (they work without an active venv).
    monkeypatch.setattr(sys, "argv", [".venv/bin/disagg-gym"])
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capsys, "train", "--env", "disagg/SmallRoute-short-v3", "--out", str(out_dir))
    assert rc == 0 and seen[-1] == "disagg/SmallRoute-short-v3"
    assert out.strip().splitlines()[1].endswith(f"(view: tensorboard --logdir {out_dir / 'tb'})")  # none in that venv
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "tensorboard").write_text("")
    rc, out, _ = run(capsys, "train", "--env", "disagg/SmallRoute-short-v3", "--out", str(out_dir))
    lines = out.strip().splitlines()
    assert lines[1].endswith(f"(view: .venv/bin/tensorboard --logdir {out_dir / 'tb'})")
    assert lines[2] == (f"next: .venv/bin/disagg-gym evaluate --env {SMALL_ID} --policy sb3:{out_dir / 'model.zip'} "
                        f"--episodes 5 --out {out_dir / 'eval.csv'}")


@pytest.mark.parametrize("command", ["bench", "validate"])
def test_long_commands_state_their_duration_in_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0
    assert "minutes" in " ".join(out.split()) and "load average" in " ".join(out.split())


def test_validate_help_counts_the_committed_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "validate", "--help")
    assert rc == 0
    results = Path(__file__).resolve().parents[1] / "leaderboard" / "results.csv"
    rows = sum(1 for _ in results.open()) - 1  # header
    assert f"({rows:,} episodes)" in " ".join(out.split())


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _opening_docstring(path: Path) -> str:
    text = path.read_text()
    return text.split('"""')[1] if text.lstrip("r").startswith('"""') else ""


CONTINUED = sorted(p.name for p in SCRIPTS.glob("*.py") if "\\\n" in _opening_docstring(p))


def test_scripts_with_continued_examples_exist() -> None:
    assert "tune.py" in CONTINUED and "train.py" in CONTINUED


@pytest.mark.parametrize("script", CONTINUED)
def test_a_scripts_docstring_keeps_its_line_continuations(script: str) -> None:
    # `--help` shows the module docstring (RawDescriptionHelpFormatter); in a plain docstring
    # Python joins every backslash-newline of its multi-line command examples into one line
    assert (SCRIPTS / script).read_text().startswith('r"""'), f"{script}: make its docstring raw (r\"\"\"...)"
