"""Plots of a run (latency CDFs, timelines) with matplotlib's Agg backend; files only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf(series: Mapping[str, Mapping[str, Sequence[float]]], path: Path, title: str = "") -> Path:
    """CDFs of TTFT, TPOT and E2E for one or more named runs.

    Args:
        series: ``{label: {"ttft": [...], "tpot": [...], "e2e": [...]}}`` in seconds.
        path: Output PNG path.
        title: Figure title.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, unit in zip(axes, ("ttft", "tpot", "e2e"), ("TTFT (s)", "TPOT (s)", "end-to-end (s)")):
        for label, data in series.items():
            vals = np.sort(np.asarray(data.get(key, []), dtype=float))
            if len(vals):
                ax.plot(vals, np.arange(1, len(vals) + 1) / len(vals), label=label)
        ax.set_xscale("log")
        ax.set_xlabel(unit)
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeline(rows: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Timeline of queues, decode batch, KV memory, link load and pool sizes."""
    plt = _plt()
    t = np.array([r["t_s"] for r in rows])
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(t, [r["prefill_queue_tokens"] for r in rows], label="prefill queue (tokens)")
    axes[0].set_ylabel("tokens")
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [r["decode_batch"] for r in rows], label="decode batch (sequences)")
    axes[1].plot(t, [r["decode_waiting"] for r in rows], label="waiting for decode KV room")
    axes[1].legend(fontsize=8)
    axes[2].plot(t, [r["kv_used_frac_prefill"] for r in rows], label="KV used, prefill pool")
    axes[2].plot(t, [r["kv_used_frac_decode"] for r in rows], label="KV used, decode pool")
    axes[2].set_ylim(0, 1.05)
    axes[2].legend(fontsize=8)
    axes[3].plot(t, [r["transfers_in_flight"] for r in rows], label="KV transfers in flight")
    axes[3].plot(t, [r["n_prefill"] for r in rows], label="prefill instances", ls="--")
    axes[3].plot(t, [r["n_decode"] for r in rows], label="decode instances", ls="--")
    axes[3].legend(fontsize=8)
    axes[3].set_xlabel("simulated time (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
