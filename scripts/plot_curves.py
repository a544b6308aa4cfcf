r"""Plots learning curves written by ``scripts/cleanrl_ppo.py --curve`` (one line per CSV).

    python scripts/plot_curves.py --out docs/img/cleanrl_smallroute.png \
        --title "..." LABEL=path.csv [LABEL=path.csv ...]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--ylabel", default="training reward per step (last update)")
    p.add_argument("curves", nargs="+", help="LABEL=path.csv")
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for item in a.curves:
        label, _, path = item.partition("=")
        with open(path) as f:
            rows = list(csv.DictReader(f))
        ax.plot([int(r["step"]) for r in rows], [float(r["reward_per_step"]) for r in rows], label=label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(a.ylabel)
    ax.set_title(a.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
