"""Interconnect layer: link tiers and idle-link transfer times (contention: kv_transfer).

Plain simulation library: never imports gymnasium or torch.
"""

from __future__ import annotations

from disagg_gym.interconnect.links import (
    LINKS,
    NETWORK_EFF,
    TIERS,
    LinkSpec,
    get_link,
    link_for_gpu,
)

__all__ = ["LINKS", "NETWORK_EFF", "TIERS", "LinkSpec", "get_link", "link_for_gpu"]
