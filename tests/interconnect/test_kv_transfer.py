"""Max-min fair transfers over shared ports against hand-computed answers."""

from __future__ import annotations

import pytest

from disagg_gym.interconnect.kv_transfer import Port, TransferManager
from disagg_gym.sim.engine import Engine


def _run(transfers, ports_bw=None, lat: float = 10e-6):
    """``transfers``: (start time, bytes, port names, cap). Returns finish times by index."""
    eng = Engine()
    tm = TransferManager(eng)
    ports_bw = ports_bw or {"x": 100e9}
    done: dict[int, float] = {}

    def go(a):
        i, nbytes, names, cap = a
        ports = [tm.port(n, "nvlink", ports_bw[n]) for n in names]
        tm.start(i, nbytes, ports, cap, lat, lambda p: done.__setitem__(p, eng.now))

    for i, (t, nbytes, names, cap) in enumerate(transfers):
        eng.schedule(t, go, (i, nbytes, names, cap))
    eng.run_until()
    assert tm.active == 0
    return done


INF = float("inf")


def test_single_transfer_is_latency_plus_bytes_over_bandwidth() -> None:
    done = _run([(0.0, 1e9, ["x"], INF)])
    assert done[0] == pytest.approx(10e-6 + 1e9 / 100e9, rel=1e-12)


def test_rate_cap_limits_a_lone_transfer() -> None:
    done = _run([(0.0, 1e9, ["x"], 25e9)], lat=0.0)
    assert done[0] == pytest.approx(1e9 / 25e9, rel=1e-12)


def test_two_equal_concurrent_transfers_share_bandwidth() -> None:
    done = _run([(0.0, 1e9, ["x"], INF), (0.0, 1e9, ["x"], INF)], lat=0.0)
    assert done[0] == pytest.approx(2e9 / 100e9) and done[1] == pytest.approx(2e9 / 100e9)


def test_two_senders_into_one_receiver_each_get_half_its_ingress() -> None:
    # Senders a and b have 100 GB/s egress each; the receiver's ingress is 100 GB/s.
    bw = {"out_a": 100e9, "out_b": 100e9, "in_d": 100e9}
    done = _run([(0.0, 1e9, ["out_a", "in_d"], INF), (0.0, 1e9, ["out_b", "in_d"], INF)], bw, lat=0.0)
    assert done[0] == pytest.approx(1e9 / 50e9) and done[1] == pytest.approx(1e9 / 50e9)


def test_max_min_gives_leftover_to_the_unconstrained_flow() -> None:
    # A crosses x (100 GB/s) only; B crosses x and y (20 GB/s): B = 20, A = 80 (max-min fair).
    bw = {"x": 100e9, "y": 20e9}
    done = _run([(0.0, 0.8e9, ["x"], INF), (0.0, 0.2e9, ["x", "y"], INF)], bw, lat=0.0)
    assert done[0] == pytest.approx(0.01) and done[1] == pytest.approx(0.01)


def test_late_joiner_recomputes_shares() -> None:
    # A: 1 GB at t=0; B: 0.2 GB at t=5 ms. A alone 5 ms (0.5 GB), then 50 GB/s each:
    # B needs 4 ms -> 9 ms; A then has 0.3 GB alone: 3 ms -> 12 ms.
    done = _run([(0.0, 1e9, ["x"], INF), (0.005, 0.2e9, ["x"], INF)], lat=0.0)
    assert done[1] == pytest.approx(0.009) and done[0] == pytest.approx(0.012)


def test_latency_occupies_no_bandwidth() -> None:
    # B waits its 1 ms latency, during which A has the port alone.
    done = _run([(0.0, 1e9, ["x"], INF), (0.0, 1e9, ["x"], INF)], lat=0.001)
    assert done[0] == pytest.approx(0.001 + 0.02) and done[1] == pytest.approx(0.001 + 0.02)


def test_zero_bytes_completes_after_latency() -> None:
    done = _run([(1.0, 0.0, ["x"], INF)], lat=5e-6)
    assert done[0] == pytest.approx(1.0 + 5e-6)


def test_bad_bandwidth_is_rejected() -> None:
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        Port("x", "pcie", 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_rates_are_max_min_fair_on_random_port_graphs(seed: int) -> None:
    """Oracle: the characterisation of max-min fairness, not the filling algorithm. Rates are
    feasible (no port over capacity, no flow over its cap) and every flow has a bottleneck: it
    runs at its cap, or crosses a saturated port on which no flow is faster. Checked after every
    start and finish, with groups of flows on identical ports (one sender to one receiver) mixed
    with flows over other port sets."""
    import random

    rng = random.Random(seed)
    eng = Engine()
    tm = TransferManager(eng)
    names = ["e0", "e1", "e2", "i0", "i1", "w"]
    bw = {n: rng.choice([25e9, 50e9, 100e9]) for n in names}
    ports = {n: tm.port(n, "rdma", bw[n]) for n in names}
    routes = [("e0", "i0"), ("e0", "i0"), ("e0", "i1"), ("e1", "i0"), ("e2", "i1", "w"), ("e1", "i1", "w")]
    checks = {"n": 0}

    def check(_: object = None) -> None:
        flows = {id(f): f for p in ports.values() for f in p.flows}.values()
        for p in ports.values():
            assert sum(f.rate for f in p.flows) <= p.bandwidth_Bps * (1 + 1e-9)
        for f in flows:
            assert f.rate <= f.cap_Bps * (1 + 1e-12)
            if f.rate >= f.cap_Bps * (1 - 1e-9):
                continue
            assert any(
                sum(g.rate for g in p.flows) >= p.bandwidth_Bps * (1 - 1e-9)
                and all(g.rate <= f.rate * (1 + 1e-9) for g in p.flows)
                for p in f.ports
            ), (f.payload, f.rate)
        checks["n"] += 1

    def go(k: int) -> None:
        route = routes[rng.randrange(len(routes))]
        cap = rng.choice([INF, INF, 30e9, 10e9])
        tm.start(k, rng.uniform(1e6, 5e8), [ports[n] for n in route], cap, 0.0, check)
        check()

    for k in range(60):
        eng.schedule(rng.uniform(0, 0.02), go, k)
    eng.run_until()
    assert tm.active == 0 and checks["n"] == 120
