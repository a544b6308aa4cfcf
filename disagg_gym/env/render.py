"""Small dashboards of the env state: an ANSI text table and an RGB image (numpy only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.env.serving_env import DisaggServingEnv

_ROLE_RGB = {Role.PREFILL: (66, 133, 244), Role.DECODE: (52, 168, 83), Role.COLOCATED: (251, 188, 5)}
_BAR_RGB = ((234, 67, 53), (52, 168, 83), (66, 133, 244))

# A 3x5 pixel font (upper case, digits, a little punctuation), so rgb_array frames carry their
# labels and simulated time without matplotlib or PIL. Rows top to bottom, "#" = ink.
_FONT_ROWS = {
    "A": ".#.|#.#|###|#.#|#.#", "B": "##.|#.#|##.|#.#|##.", "C": ".##|#..|#..|#..|.##",
    "D": "##.|#.#|#.#|#.#|##.", "E": "###|#..|##.|#..|###", "F": "###|#..|##.|#..|#..",
    "G": ".##|#..|#.#|#.#|.##", "H": "#.#|#.#|###|#.#|#.#", "I": "###|.#.|.#.|.#.|###",
    "J": "..#|..#|..#|#.#|.#.", "K": "#.#|#.#|##.|#.#|#.#", "L": "#..|#..|#..|#..|###",
    "M": "#.#|###|###|#.#|#.#", "N": "##.|#.#|#.#|#.#|#.#", "O": ".#.|#.#|#.#|#.#|.#.",
    "P": "##.|#.#|##.|#..|#..", "Q": ".#.|#.#|#.#|##.|.##", "R": "##.|#.#|##.|#.#|#.#",
    "S": ".##|#..|.#.|..#|##.", "T": "###|.#.|.#.|.#.|.#.", "U": "#.#|#.#|#.#|#.#|###",
    "V": "#.#|#.#|#.#|#.#|.#.", "W": "#.#|#.#|###|###|#.#", "X": "#.#|#.#|.#.|#.#|#.#",
    "Y": "#.#|#.#|.#.|.#.|.#.", "Z": "###|..#|.#.|#..|###",
    "0": "###|#.#|#.#|#.#|###", "1": ".#.|##.|.#.|.#.|###", "2": "##.|..#|.#.|#..|###",
    "3": "##.|..#|.#.|..#|##.", "4": "#.#|#.#|###|..#|..#", "5": "###|#..|##.|..#|##.",
    "6": ".##|#..|###|#.#|###", "7": "###|..#|.#.|.#.|.#.", "8": "###|#.#|###|#.#|###",
    "9": "###|#.#|###|..#|##.", ".": "...|...|...|...|.#.", "=": "...|###|...|###|...",
    ":": "...|.#.|...|.#.|...", "-": "...|...|###|...|...", "/": "..#|..#|.#.|#..|#..",
    "%": "#.#|..#|.#.|#..|#.#", ",": "...|...|...|.#.|#..", "(": ".#.|#..|#..|#..|.#.",
    ")": ".#.|..#|..#|..#|.#.", " ": "...|...|...|...|...",
}
FONT: dict[str, np.ndarray] = {
    ch: np.array([[c == "#" for c in row] for row in rows.split("|")], dtype=bool)
    for ch, rows in _FONT_ROWS.items()
}
"""Glyphs of ``text_mask``: 5 x 3 boolean arrays."""


def text_mask(text: str, scale: int = 2) -> np.ndarray:
    """Boolean ink mask of ``text`` (upper-cased; unknown characters print as spaces).

    Each glyph is 3 x 5 pixels plus one column of spacing, times ``scale``.
    """
    glyphs = [FONT.get(ch, FONT[" "]) for ch in text.upper()]
    if not glyphs:
        return np.zeros((5 * scale, 0), dtype=bool)
    gap = np.zeros((5, 1), dtype=bool)
    mask = np.hstack([np.hstack([g, gap]) for g in glyphs])[:, :-1]
    return np.kron(mask, np.ones((scale, scale), dtype=bool)).astype(bool)


def _draw_text(img: np.ndarray, text: str, x: int, y: int, rgb: tuple[int, int, int] = (0, 0, 0),
               scale: int = 2, max_width: int | None = None) -> None:
    mask = text_mask(text, scale)
    h = min(mask.shape[0], img.shape[0] - y)
    w = min(mask.shape[1], img.shape[1] - x, max_width if max_width is not None else img.shape[1])
    if h > 0 and w > 0:
        img[y:y + h, x:x + w][mask[:h, :w]] = rgb


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
        state = getattr(inst.state, "value", inst.state)  # "active", not "InstanceState.ACTIVE"
        lines.append(
            f"{inst.idx:3d} {inst.gpu:>9s}x{inst.tp} {inst.role.value:9s} {state:9s} "
            f"q={inst.pq_tokens:7d}tok batch={inst.B:4d}/{inst.max_batch:<4d} kv[{bar:<20s}] xfer={links}"
        )
    return "\n".join(lines) + "\n"


HEADER_H = 28
"""Pixel rows above the instance rows: simulated time and counters, then the column labels."""
FOOTER_H = 14
"""Pixel rows below the instance rows: what the bars measure."""


def render_rgb(env: DisaggServingEnv, width: int = 480, row_h: int = 12) -> np.ndarray:
    """A labelled frame: simulated time, column labels, then one row per instance.

    Each row: index and role on the role colour (grey stripes: not active), then three bars
    from 0 to 1: prefill queue / ``queue_norm_tokens``, decode batch / max batch, KV memory used
    / capacity (a light tick marks 0.5). The frame size depends only on the instance count, so
    videos of one env have a constant size.
    """
    cl = env.cluster
    assert cl is not None
    n = cl.n
    height = max(64, HEADER_H + row_h * n + 4 + FOOTER_H)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    col = width // 4
    _draw_text(
        img, f"SIM TIME {cl.engine.now:.2f} S  DONE {env.recorder.completed}  REJECTED {env.recorder.rejected}"
        f"  QUEUED+RUNNING {cl.in_system}", 2, 2,
    )
    for j, label in enumerate(("INSTANCE", "PREFILL QUEUE", "DECODE BATCH", "KV MEMORY")):
        _draw_text(img, label, col * j + 2, 15, (80, 80, 80), max_width=col - 4)
    for i, inst in enumerate(cl.instances):
        y0 = HEADER_H + i * row_h
        y1 = y0 + row_h - 2
        img[y0:y1, 2:col - 4] = _ROLE_RGB[inst.role]
        if inst.state != "active":
            img[y0:y1:2, 2:col - 4] = (120, 120, 120)
        _draw_text(img, f"{inst.idx} {inst.role.value}", 4, y0, max_width=col - 8)
        bars = (
            min(inst.pq_tokens / env.cfg.queue_norm_tokens, 1.0),
            inst.B / inst.max_batch,
            inst.kv_used / inst.kv_cap if inst.kv_cap else 0.0,
        )
        for j, (frac, rgb) in enumerate(zip(bars, _BAR_RGB)):
            x0 = col * (j + 1)
            img[y0:y1, x0:x0 + col - 4] = (235, 235, 235)
            img[y0:y1, x0:x0 + int((col - 4) * frac)] = rgb
            img[y0:y1, x0 + (col - 4) // 2] = (190, 190, 190)
    _draw_text(img, "BARS 0-1: QUEUE/NORM, BATCH/MAX, KV/CAPACITY", 2, height - FOOTER_H + 2, (80, 80, 80))
    return img
