"""A dependency-free PNG plot of one metric against steps, teacher and student side by side."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

COLOURS = {"teacher": (31, 119, 180), "student": (214, 39, 40)}
SIZE, MARGIN = (640, 420), 60


def _scale(values: list[float], lo: float, hi: float, out_lo: float, out_hi: float) -> list[float]:
    span = hi - lo or 1.0
    return [out_lo + (v - lo) / span * (out_hi - out_lo) for v in values]


def quality_plot(rows: list[dict], metric: str) -> Image.Image:
    """``metric`` against steps (log2 axis) for each model in ``rows`` (``quality.json`` rows)."""
    points = {
        m: sorted((r["steps"], r[metric]) for r in rows if r["model"] == m and metric in r) for m in COLOURS
    }
    allx = [math.log2(s) for pts in points.values() for s, _ in pts]
    ally = [v for pts in points.values() for _, v in pts]
    if not ally:
        raise ValueError(f"quality_plot: no rows carry metric '{metric}'.")
    img = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(img)
    w, h = SIZE
    draw.rectangle([MARGIN, MARGIN // 2, w - MARGIN // 2, h - MARGIN], outline="black")
    x_lo, x_hi, y_lo, y_hi = min(allx), max(allx), min(ally), max(ally)
    for model, pts in points.items():
        if not pts:
            continue
        xs = _scale([math.log2(s) for s, _ in pts], x_lo, x_hi, MARGIN + 10, w - MARGIN // 2 - 10)
        ys = _scale([v for _, v in pts], y_lo, y_hi, h - MARGIN - 10, MARGIN // 2 + 10)
        draw.line(list(zip(xs, ys, strict=True)), fill=COLOURS[model], width=3)
        for (steps, value), x, y in zip(pts, xs, ys, strict=True):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=COLOURS[model])
            draw.text((x + 6, y - 14), f"{value:.3g}", fill=COLOURS[model])
            draw.text((x - 4, h - MARGIN + 6), str(steps), fill="black")
    draw.text((w // 2 - 20, h - MARGIN + 24), "steps", fill="black")
    draw.text((8, MARGIN // 2), metric, fill="black")
    for i, model in enumerate(m for m in COLOURS if points[m]):
        draw.text((w - MARGIN * 2, MARGIN // 2 + 6 + 14 * i), model, fill=COLOURS[model])
    return img
