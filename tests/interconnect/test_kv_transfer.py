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
