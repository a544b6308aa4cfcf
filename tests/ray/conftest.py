"""One local Ray instance (2 CPUs) shared by the tests in this folder; skipped without ray."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    from disagg_gym_agents.ray_setup import init_ray

    started = init_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()
