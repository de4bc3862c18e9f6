"""Drawing a scene (harness.spec.scenes says what one is) as an RGB array, with numpy only: the same
spec gives the same pixels on every platform's image."""

from __future__ import annotations

from harness.spec.scenes import COLORS, GLYPHS


def draw_scene(width: int, height: int, shape: str, color: str, background: str, text: str):
    """An RGB uint8 array: ``shape`` in ``color`` in the left part, ``text`` in the right part
    in black or white (whichever stands out on ``background``)."""
    import numpy as np

    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[...] = COLORS[background]
    has_text = bool(text.strip())
    side = min(height, width // 2 if has_text else width) * 8 // 10
    cy, cx = height // 2, (width // 4 if has_text else width // 2)
    y, x = np.mgrid[0:height, 0:width]
    r = side / 2
    if shape == "circle":
        mask = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    elif shape == "square":
        mask = (abs(y - cy) <= r) & (abs(x - cx) <= r)
    elif shape == "triangle":  # apex up: the row's half-width grows from 0 at the top to r
        top = cy - r
        mask = (y >= top) & (y <= cy + r) & (abs(x - cx) <= (y - top) / 2)
    else:
        mask = np.zeros((height, width), dtype=bool)
    pixels[mask] = COLORS[color]
    if has_text:
        ink = (0, 0, 0) if sum(COLORS[background]) > 380 else (255, 255, 255)
        _write(pixels, text, (width // 2, 0, width - width // 2, height), ink)
    return pixels


def _write(pixels, text: str, box: tuple[int, int, int, int], ink) -> None:
    """``text`` centred in ``box`` (x, y, w, h), each glyph pixel a square block."""
    x0, y0, w, h = box
    cols = 6 * len(text) - 1  # 5 pixels a glyph, 1 between glyphs
    scale = max(1, min(w * 9 // 10 // cols, h * 7 // 10 // 7))
    left = x0 + (w - cols * scale) // 2
    top = y0 + (h - 7 * scale) // 2
    for i, char in enumerate(text):
        glyph = GLYPHS[char]
        for row in range(7):
            for col in range(5):
                if glyph[row * 5 + col] == "#":
                    gx, gy = left + (6 * i + col) * scale, top + row * scale
                    pixels[gy:gy + scale, gx:gx + scale] = ink
