"""A policy of the user's own: ``--import MODULE`` and the ``disagg_gym.policies`` entry points.

The oracle for "it ran the user's policy" is the policy's own bookkeeping (every call it saw)
and the rows ``validate`` replays exactly; every bad input is one line.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the [rl] extra (benchmark, validate)

from disagg_gym.cli import main
from disagg_gym.errors import UserError
from disagg_gym_agents import registry
from disagg_gym_agents.registry import POLICIES

POLICY_SOURCE = '''
from disagg_gym_agents.base import Policy
from disagg_gym_agents.registry import POLICIES

CALLS = []


@POLICIES.register("{name}")
class MyRoundRobin(Policy):
    name = "{name}"
    tasks = ("route",)

    def __init__(self, env, seed: int = 0):
        super().__init__(env)
        self.k = 0

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        prefill, decode = self.base.route_mask_lists()
        p = [i for i, ok in enumerate(prefill) if ok]
        d = [i for i, ok in enumerate(decode) if ok]
        self.k += 1
        CALLS.append(self.k)
        return self.base.action_for(route=(p[self.k % len(p)], d[self.k % len(d)])), state
'''


def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Writes a module registering a policy under a fresh name; returns (module, policy name)."""
    tag = uuid.uuid4().hex[:8]
    module, name = f"my_policies_{tag}", f"my_rr_{tag}"
    (tmp_path / f"{module}.py").write_text(POLICY_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    return module, name


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_evaluate_imports_the_users_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    module, name = _plugin(tmp_path, monkeypatch)
    rc, _, err = _run(capsys, "evaluate", "--env", "small-route", "--policy", name, "--episodes", "1",
                      "--overrides", "horizon_s=5", "--out", str(tmp_path / "e.csv"))
    assert rc == 2 and f"unknown heuristic '{name}'" in err
    assert err.strip().endswith('(a policy of your own: --import MODULE, docs/agents.md "Your own policy")')
    rc, out, err = _run(capsys, "evaluate", "--import", module, "--env", "small-route", "--policy", name,
                        "--episodes", "1", "--overrides", "horizon_s=5", "--out", str(tmp_path / "e.csv"))
    assert rc == 0, err
    calls = sys.modules[module].CALLS
    rows = (tmp_path / "e.csv").read_text().splitlines()
    assert len(rows) == 2 and len(calls) > 10  # one episode, every route decision was the policy's


def test_evaluate_names_the_env_that_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Overrides that change the config: the rows carry the env's own custom id, not the
    # standard one; a cluster of the user's own runs under the id their module registers, and a
    # YAML path given as --env says how in one line.
    rc, out, err = _run(capsys, "evaluate", "--env", "small-route", "--policy", "jsq", "--episodes", "1",
                        "--overrides", "horizon_s=5", "--json", "--out", str(tmp_path / "e.csv"))
    assert rc == 0, err
    env_id = json.loads(out)["env_id"]
    assert env_id.startswith("disagg/SmallRoute-custom-") and env_id.endswith("-v3")
    assert (tmp_path / "e.csv").read_text().splitlines()[1].startswith(env_id + ",")
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("name: mine\nhorizon_s: 5\ncluster: {groups: [{gpu: h100-sxm, count: 2, role: colocated}]}\n"
                       "workload: {kind: poisson, rate_per_s: 5}\n")
    rc, _, err = _run(capsys, "evaluate", "--env", str(cluster), "--policy", "jsq")
    assert rc == 2 and err.startswith(f"disagg-gym: error: {str(cluster)!r} is a config file, not an env id: ")
    m = f"my_cluster_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{m}.py").write_text(
        "import gymnasium as gym\n"
        f"gym.register('{m}/Cluster-v0', entry_point='disagg_gym.env.serving_env:DisaggServingEnv', "
        f"kwargs={{'config': {str(cluster)!r}}})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = _run(capsys, "evaluate", "--import", m, "--env", f"{m}/Cluster-v0", "--policy", "jsq",
                        "--episodes", "1", "--json")
    assert rc == 0, err
    assert json.loads(out)["env_id"] == f"{m}/Cluster-v0" and json.loads(out)["summary"]["requests_total"]["mean"] > 0


@pytest.mark.parametrize(("source", "message"), [
    (None, "--import {m}: No module named '{m}' (on sys.path? a module of the current folder needs PYTHONPATH=.)"),
    ("raise RuntimeError('boom')", "--import {m}: the module failed to import: RuntimeError: boom"),
])
def test_a_bad_import_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  source: str | None, message: str) -> None:
    m = f"broken_{uuid.uuid4().hex[:8]}"
    if source is not None:
        (tmp_path / f"{m}.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv in (["evaluate", "--import", m, "--env", "small-route", "--policy", "jsq"],
                 ["validate", "--import", m, "--sample", "1"],
                 ["tune-baselines", "--import", m, "--config", "small-route", "--policy", "jsq+ttft_guard"]):
        rc, out, err = _run(capsys, *argv)
        assert rc == 2 and "Traceback" not in err
        assert err.strip() == "disagg-gym: error: " + message.format(m=m)


def test_benchmark_and_validate_score_and_replay_the_users_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module, name = _plugin(tmp_path, monkeypatch)
    out = tmp_path / "lb"
    common = ["--configs", "disagg/SmallRoute-v3", "--splits", "test", "--episodes", "1", "--set", "horizon_s=5"]
    rc, _, err = _run(capsys, "benchmark", "--import", module, *common, "--agents", name, "--out", str(out),
                      "--no-plots", "--no-progress")
    assert rc == 0, err
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and f",{name}," in rows[1]
    rc, vout, verr = _run(capsys, "validate", str(out / "results.csv"), "--import", module, "--no-progress")
    assert rc == 0 and "replayed exactly" in vout + verr, verr
    rc, _, err = _run(capsys, "benchmark", "--import", module, *common, "--agents", name, "--out", str(out),
                      "--backend", "ray")
    assert rc == 2 and err.strip().startswith(f"disagg-gym: error: --import {module} works with the local backend only")


def test_installed_plugin_packages_are_found_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, name = _plugin(tmp_path, monkeypatch)
    ep = importlib.metadata.EntryPoint(name="mine", value=module, group=registry.PLUGIN_GROUP)
    real = importlib.metadata.entry_points

    def fake(**kw: object) -> object:
        return [ep] if kw.get("group") == registry.PLUGIN_GROUP else real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    monkeypatch.setattr(POLICIES, "plugins_loaded", False)
    assert name in POLICIES  # loaded on the first name the registry does not know
    assert POLICIES.get(f"{name}+ttft_guard").__name__  # and composes like a built-in router


def test_a_failing_plugin_package_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint(name="bad", value="no_such_module_xyz", group=registry.PLUGIN_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == registry.PLUGIN_GROUP else [])
    monkeypatch.setattr(POLICIES, "plugins_loaded", False)
    with pytest.raises(UserError, match=r"^policy plugin 'bad' \(no_such_module_xyz, package \?\) failed to import: "
                                        r"ModuleNotFoundError"):
        POLICIES.get("not_registered_anywhere")


def test_a_row_of_a_policy_not_imported_names_it_not_its_params() -> None:
    # validate said "bad params {}: unknown heuristic 'my_fewest'", and the params were fine
    from disagg_gym.errors import UserError
    from disagg_gym_agents.leaderboard.cells import Cell
    from disagg_gym_agents.leaderboard.runner import _bind

    cell = Cell("disagg/SmallRoute-v3", "no_such_policy", "heuristic", "heuristic:no_such_policy", None)
    with pytest.raises(UserError) as exc:
        _bind(cell, {})
    assert str(exc.value).startswith("disagg/SmallRoute-v3 no_such_policy: unknown heuristic 'no_such_policy'")
    assert "bad params" not in str(exc.value)


ROUTER_SOURCE = """
from disagg_gym.cluster.policies import ROUTERS, JoinShortestQueueRouter


@ROUTERS.register("{name}")
class MyRouter(JoinShortestQueueRouter):
    '''JSQ under another name.'''
"""


def test_a_router_of_ones_own_simulates_composes_and_becomes_an_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # agents were derived from the routers once, before --import ran: "unknown heuristic"; and
    # simulate had no --import. Oracle: the router is JSQ renamed, so it simulates exactly as jsq.
    tag = uuid.uuid4().hex[:8]
    module, name = f"my_router_{tag}", f"my_jsq_{tag}"
    (tmp_path / f"{module}.py").write_text(ROUTER_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = {}
    for policy, extra in ((name, ["--import", module]), ("jsq", [])):
        rc, out, err = _run(capsys, "simulate", *extra, "--policy", policy, "--horizon", "5", "--json")
        assert rc == 0, err
        runs[policy] = {k: v for k, v in json.loads(out).items() if k not in ("policy", "wall_s")}
    assert runs[name] == runs["jsq"]
    rc, _, err = _run(capsys, "simulate", "--import", module, "--policy", f"{name}+ttft_guard", "--horizon", "5")
    assert rc == 0, err
    rc, _, err = _run(capsys, "evaluate", "--import", module, "--env", "small-route", "--policy", name,
                      "--episodes", "1", "--overrides", "horizon_s=5", "--out", str(tmp_path / "e.csv"))
    assert rc == 0, err
