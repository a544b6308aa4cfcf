"""Composed heuristics ``<router>+<admission>`` in the agents registry and the env."""

from __future__ import annotations

import gymnasium as gym
import pytest

import disagg_gym  # noqa: F401  (registers the env ids)
from disagg_gym.errors import UserError
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation
from disagg_gym_agents import POLICIES, make_policy
from disagg_gym_agents.admission import AdmittedPolicy
from disagg_gym_agents.evaluation import run_episode

ROUTE_ID = "disagg/SmallRoute-v3"
OVER = {"horizon_s": 6.0, "workload.rate_per_s": 120}


def test_composed_names_resolve_without_being_listed() -> None:
    cls = POLICIES.get("jsq+ttft_guard")
    assert issubclass(cls, AdmittedPolicy) and cls.name == "jsq+ttft_guard"
    assert POLICIES.get("jsq+ttft_guard") is cls  # built once
    assert "least_finish+mooncake" in POLICIES and "jsq+nope" not in POLICIES
    assert not any("+" in n for n in POLICIES.names())
    assert POLICIES.get("kv_aware+queue_guard").tasks == ("route", "joint")
    assert POLICIES.get("static_ratio+ttft_guard").tasks == ("joint",)  # routes on joint only
    with pytest.raises(UserError, match="unknown heuristic 'nope'"):
        POLICIES.get("nope+ttft_guard")


def test_composed_policy_matches_the_simulator_composition() -> None:
    # Same router, same controller, same workload: the env-level policy (through the reject
    # action) and the simulator-level AdmittedRouter take identical decisions.
    env = gym.make(ROUTE_ID, overrides=OVER)
    row = run_episode(make_policy("jsq+ttft_guard", env), env, workload_seed=20_001)
    scen = load_scenario("small-route", OVER)
    sim = Simulation(scen, seed=20_001, router="jsq+ttft_guard")
    sim.run(drain=False)
    kp = sim.summary()
    assert row["requests_rejected"] == kp["requests_rejected"] > 0
    assert row["requests_completed"] == kp["requests_completed"]
    env.close()


def test_parameters_from_kwargs_and_the_scenario() -> None:
    env = gym.make(ROUTE_ID, overrides={**OVER, "admission.ttft_guard.alpha": 1.7})
    pol = make_policy("jsq+ttft_guard", env)
    assert pol.controller.alpha == 1.7
    assert make_policy("jsq+ttft_guard", env, alpha=0.9).controller.alpha == 0.9
    with pytest.raises(UserError, match="alpha must be a positive"):
        make_policy("jsq+ttft_guard", env, alpha=-1)
    env.close()


def test_unknown_parameters_are_named() -> None:
    env = gym.make(ROUTE_ID, overrides=OVER)
    # jsq takes no parameters: Python's own message ("takes no arguments") did not name 'beta'.
    with pytest.raises(UserError, match="jsq: unknown parameter 'beta'; it takes none"):
        make_policy("jsq+ttft_guard", env, beta=1)
    with pytest.raises(UserError, match="unknown parameter 'beta'; expected one of: alpha"):
        make_policy("spillover", env, beta=1)
    with pytest.raises(UserError, match="alpha must be > 0"):
        make_policy("spillover", env, alpha=-1)
    # policies that are not router heuristics: Python's "RandomPolicy.__init__() got an
    # unexpected keyword argument" named the class, not the policy or what it takes
    with pytest.raises(UserError, match="random: unknown parameter 'beta'; expected one of: include_reject"):
        make_policy("random", env, beta=1)
    env.close()


def test_needs_the_reject_action() -> None:
    env = gym.make(ROUTE_ID, overrides={**OVER, "env.allow_reject": False})
    with pytest.raises(UserError, match="allow_reject"):
        make_policy("jsq+ttft_guard", env)
    env.close()


def test_a_keyword_neither_half_takes_names_the_composed_policy_and_both_halves() -> None:
    # it was blamed on the router alone: "jsq: unknown parameter 'alpah'; it takes none"
    import gymnasium as gym

    from disagg_gym.errors import UserError
    from disagg_gym_agents.factory import make_policy

    env = gym.make("disagg/SmallRoute-v3")
    with pytest.raises(UserError) as exc:
        make_policy("jsq+ttft_guard", env, alpah=1.5)
    assert str(exc.value) == ("jsq+ttft_guard: jsq: unknown parameter 'alpah'; it takes none; "
                              "admission 'ttft_guard' takes: alpha, include_transfer")
    assert make_policy("jsq+ttft_guard", env, alpha=1.5).params["alpha"] == 1.5
