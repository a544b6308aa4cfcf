"""On-prem-first spillover routing for hybrid (reserved + on-demand) clusters (issue #15 item 2).

The router a practitioner writes for a hybrid deployment: serve every request on the reserved
(on-prem) instances, and burst to on-demand (cloud) instances only when the best on-prem pair's
predicted TTFT would exceed ``alpha`` x the request's TTFT SLO. Pairs stay within one side, so
a burst never pays the WAN. Registered as router ``spillover`` (``simulate --policy spillover``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from disagg_gym.cluster import admission as _admission  # module: policies imports this file
from disagg_gym.cluster.policies import ROUTERS, decode_pressure
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.cluster.instance import Instance
    from disagg_gym.workload.request import Request


@ROUTERS.register("spillover")
class SpilloverRouter:
    """On-prem first; burst to on-demand instances when on-prem would miss the TTFT SLO.

    Within a side, the prefill instance with the lowest predicted TTFT (queue wait + own
    prefill + KV transfer, :func:`disagg_gym.cluster.admission.predicted_ttft_s`) is chosen,
    each paired with the side's decode instance that is quickest to reach plus a load penalty. A cluster without on-demand
    instances is all "on-prem": the router is then a least-predicted-TTFT router.

    Args:
        alpha: Burst when the on-prem prediction exceeds ``alpha`` x the TTFT SLO (> 0).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (got {alpha!r})")
        self.alpha = alpha
        self.bursts = 0

    def _best(self, cluster: Cluster, req: Request, ps: list[Instance], ds: list[Instance]) -> tuple[float, tuple[int, int] | None]:
        """The side's pair with the least predicted TTFT.

        Each prefill instance is paired with the decode instance of the side that is cheapest
        to reach (transfer estimate) plus a load penalty (as ``kv_aware``: 0.5 s per unit of
        decode pressure).
        """
        best, best_t = None, math.inf
        nbytes = req.prompt_tokens * cluster.kv_bytes_per_token
        for p in ps:
            if p.role is Role.COLOCATED:
                pair = (p.idx, p.idx)
            elif not ds:
                continue
            else:
                d = min(ds, key=lambda i: (cluster.transfer_estimate_s(p.idx, i.idx, nbytes) + 0.5 * decode_pressure(i), i.idx))
                pair = (p.idx, d.idx)
            t = _admission.predicted_ttft_s(cluster, req, pair[0], pair[1])
            if t < best_t:
                best, best_t = pair, t
        return best_t, best

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        """The on-prem pair unless it is predicted to miss; then the on-demand pair if faster."""
        ps, ds = cluster.pools()
        home_t, home = self._best(cluster, req, [i for i in ps if not i.on_demand], [i for i in ds if not i.on_demand])
        if home is not None and home_t <= self.alpha * req.slo_ttft_s:
            return home
        cloud_t, cloud = self._best(cluster, req, [i for i in ps if i.on_demand], [i for i in ds if i.on_demand])
        if cloud is not None and (home is None or cloud_t < home_t):
            self.bursts += 1
            return cloud
        return home
