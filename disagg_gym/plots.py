"""Plots of a run (latency CDFs, timelines) with matplotlib's Agg backend; files only.

Conventions (issue #20): every panel has a y-label with its unit, legends sit outside the data
(to the right of a panel, or below a row of panels), lines that can coincide differ in style,
width and z-order so neither hides the other, and latency CDFs mark the SLO targets.
"""

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


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # bbox_inches="tight" keeps the legends placed outside the axes inside the image
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _plain_log_ticks(ax: Any) -> None:
    """Log x axis labelled 0.01, 0.02, 0.05, 0.1 ... instead of 2x10^-2 (which overlapped)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def fmt(v: float, _pos: int) -> str:
        return f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v)), 6) in (1, 2, 5) else ""

    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.xaxis.set_minor_formatter(FuncFormatter(fmt))


def latency_cdf(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    path: Path,
    title: str = "",
    slo: Mapping[str, float] | None = None,
) -> Path:
    """CDFs of TTFT, TPOT and E2E for one or more named runs, with the SLO targets marked.

    Args:
        series: ``{label: {"ttft": [...], "tpot": [...], "e2e": [...]}}`` in seconds.
        path: Output PNG path.
        title: Figure title.
        slo: ``{"ttft_s", "tpot_s"[, "ttft_per_1k_prompt_s"]}`` in seconds: a vertical line at
            each target (TTFT: the base target; the label says when it grows with the prompt).
    """
    plt = _plt()
    return _save(latency_cdf_figure(series, title, slo), path, plt)


def latency_cdf_figure(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
    slo: Mapping[str, float] | None = None,
) -> Any:
    """The matplotlib figure of ``latency_cdf`` (not saved; the caller closes it)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    styles = ("-", "--", "-.", ":")
    for ax, key, unit in zip(axes, ("ttft", "tpot", "e2e"), ("TTFT (s)", "TPOT (s per output token)", "end-to-end latency (s)")):
        for k, (label, data) in enumerate(series.items()):
            vals = np.sort(np.asarray(data.get(key, []), dtype=float))
            if len(vals):
                # later series thinner and on top, with their own dash: coinciding CDFs stay visible
                ax.plot(vals, np.arange(1, len(vals) + 1) / len(vals), label=label, color=f"C{k}",
                        ls=styles[k % len(styles)], lw=max(2.4 - 0.6 * k, 1.0), zorder=2 + k)
        target = None if slo is None else slo.get(f"{key}_s")
        if target:
            extra = ""
            if key == "ttft" and slo and slo.get("ttft_per_1k_prompt_s"):
                extra = f" + {slo['ttft_per_1k_prompt_s']:g} s/1k prompt tok"
            ax.axvline(target, color="crimson", ls=":", lw=1.5, zorder=10,
                       label=f"{key.upper()} SLO {target:g} s{extra}")
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel(unit)
        ax.set_ylabel("fraction of requests (CDF)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def timeline(rows: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Timeline of prefill queues, decode batch, KV memory, KV transfers and pool sizes.

    One panel per unit: tokens, sequences, fraction of KV capacity (0-1), transfers,
    instances; ``rows`` are ``TimelineSampler`` rows.
    """
    plt = _plt()
    return _save(timeline_figure(rows, title), path, plt)


def timeline_figure(rows: Sequence[Mapping[str, float]], title: str = "") -> Any:
    """The matplotlib figure of ``timeline`` (not saved; the caller closes it)."""
    plt = _plt()
    t = np.array([r["t_s"] for r in rows])

    def col(key: str) -> list[float]:
        return [r[key] for r in rows]

    fig, axes = plt.subplots(5, 1, figsize=(10, 11), sharex=True)
    legend = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "borderaxespad": 0}
    ax = axes[0]
    ax.plot(t, col("prefill_queue_tokens"), color="C0", label="queued prompt tokens, all prefill instances")
    ax.set_ylabel("prefill queue\n(tokens)")
    ax.legend(**legend)
    ax = axes[1]
    ax.plot(t, col("decode_batch"), color="C2", lw=2.2, zorder=2, label="decode batch (running sequences)")
    ax.plot(t, col("decode_waiting"), color="C3", lw=1.2, ls="--", zorder=3,
            label="waiting for decode KV room")
    ax.set_ylabel("decode\n(sequences)")
    ax.legend(**legend)
    ax = axes[2]
    ax.plot(t, col("kv_used_frac_prefill"), color="C0", lw=2.2, alpha=0.8, zorder=2, label="prefill pool")
    ax.plot(t, col("kv_used_frac_decode"), color="C1", lw=1.2, ls="--", zorder=3, label="decode pool")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("KV memory used\n(fraction of\ncapacity, 0-1)")
    ax.legend(**legend)
    ax = axes[3]
    ax.plot(t, col("transfers_in_flight"), color="C4", drawstyle="steps-post", label="KV transfers in flight")
    ax.set_ylabel("KV transfers\n(count)")
    ax.legend(**legend)
    ax = axes[4]
    ax.plot(t, col("n_prefill"), color="C0", lw=3.0, alpha=0.6, drawstyle="steps-post", zorder=2,
            label="prefill instances")
    ax.plot(t, col("n_decode"), color="C1", lw=1.4, ls="--", drawstyle="steps-post", zorder=3,
            label="decode instances")
    ax.set_ylabel("pool size\n(instances)")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(**legend)
    ax.set_xlabel("simulated time (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
