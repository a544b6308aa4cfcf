"""Fair-share links against analytic oracles."""

from __future__ import annotations

import pytest

from disagg_gym.interconnect.kv_transfer import LinkState
from disagg_gym.sim.engine import Engine


def _run(transfers: list[tuple[float, float]], bw: float = 100e9, lat: float = 10e-6) -> dict[int, float]:
    eng = Engine()
    link = LinkState(eng, "l", "nvlink", bw, lat)
    done: dict[int, float] = {}
    for i, (t, nbytes) in enumerate(transfers):
        eng.schedule(t, lambda a: link.start(a[0], a[1], lambda p: done.__setitem__(p, eng.now)), (i, nbytes))
    eng.run_until()
    assert link.bytes_done == pytest.approx(sum(b + lat * bw for _, b in transfers), rel=1e-9)
    return done


def test_single_transfer_is_latency_plus_bytes_over_bandwidth() -> None:
    done = _run([(0.0, 1e9)])
    assert done[0] == pytest.approx(10e-6 + 1e9 / 100e9, rel=1e-12)


def test_two_equal_concurrent_transfers_share_bandwidth() -> None:
    done = _run([(0.0, 1e9), (0.0, 1e9)], lat=0.0)
    assert done[0] == pytest.approx(2e9 / 100e9) and done[1] == pytest.approx(2e9 / 100e9)


def test_late_joiner_recomputes_shares() -> None:
    # A: 1 GB at t=0; B: 0.5 GB at t=5 ms. A alone 5 ms (0.5 GB done), then both at 50 GB/s:
    # B needs 10 ms -> ends at 15 ms with A also at 1 GB. Same finish.
    done = _run([(0.0, 1e9), (0.005, 0.5e9)], lat=0.0)
    assert done[0] == pytest.approx(0.015) and done[1] == pytest.approx(0.015)
    done = _run([(0.0, 1e9), (0.005, 0.2e9)], lat=0.0)
    # B: 0.2 GB at 50 GB/s = 4 ms -> 9 ms; A then has 1 - 0.5 - 0.2 = 0.3 GB alone: 3 ms -> 12 ms.
    assert done[1] == pytest.approx(0.009) and done[0] == pytest.approx(0.012)


def test_zero_bytes_completes_after_latency() -> None:
    done = _run([(1.0, 0.0)], lat=5e-6)
    assert done[0] == pytest.approx(1.0 + 5e-6)


def test_bad_bandwidth_is_rejected() -> None:
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        LinkState(Engine(), "x", "pcie", 0.0, 0.0)
