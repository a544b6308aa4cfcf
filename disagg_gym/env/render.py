"""Small dashboards of the env state: an ANSI text table and an RGB image (numpy only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.env.serving_env import DisaggServingEnv

_ROLE_RGB = {Role.PREFILL: (66, 133, 244), Role.DECODE: (52, 168, 83), Role.COLOCATED: (251, 188, 5)}


def render_ansi(env: DisaggServingEnv) -> str:
    """One line per instance: role, state, queue, batch, KV memory bar, links in flight."""
    cl = env.cluster
    assert cl is not None
    lines = [
        f"t={cl.engine.now:9.2f}s  arrived={cl.arrived}  done={env.recorder.completed}  "
        f"rejected={env.recorder.rejected}  in_system={cl.in_system}  decision={env._kind}"
    ]
    for inst in cl.instances:
        kv = inst.kv_used / inst.kv_cap if inst.kv_cap else 0.0
        bar = "#" * int(round(kv * 20))
        links = inst.sending
        lines.append(
            f"{inst.idx:3d} {inst.gpu:>9s}x{inst.tp} {inst.role.value:9s} {inst.state:9s} "
            f"q={inst.pq_tokens:7d}tok batch={inst.B:4d}/{inst.max_batch:<4d} kv[{bar:<20s}] xfer={links}"
        )
    return "\n".join(lines) + "\n"


def render_rgb(env: DisaggServingEnv, width: int = 480, row_h: int = 12) -> np.ndarray:
    """Per instance a row: role colour, prefill-queue bar, decode-batch bar, KV-memory bar."""
    cl = env.cluster
    assert cl is not None
    n = cl.n
    height = max(64, row_h * n + 8)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    col = width // 4
    for i, inst in enumerate(cl.instances):
        y0 = 4 + i * row_h
        y1 = y0 + row_h - 2
        img[y0:y1, 2:col - 4] = _ROLE_RGB[inst.role]
        if inst.state != "active":
            img[y0:y1:2, 2:col - 4] = (120, 120, 120)
        bars = (
            min(inst.pq_tokens / env.cfg.queue_norm_tokens, 1.0),
            inst.B / inst.max_batch,
            inst.kv_used / inst.kv_cap if inst.kv_cap else 0.0,
        )
        for j, (frac, rgb) in enumerate(zip(bars, ((234, 67, 53), (52, 168, 83), (66, 133, 244)))):
            x0 = col * (j + 1)
            img[y0:y1, x0:x0 + col - 4] = (235, 235, 235)
            img[y0:y1, x0:x0 + int((col - 4) * frac)] = rgb
    return img
