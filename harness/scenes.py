"""Scene images: a coloured shape and a short word on a coloured background, drawn with numpy.

What a vision-language model must describe differently: two scenes of one size that differ in
shape, colours and word give a real model different answers ("a red circle and the word CAT"
against "a blue square and the word DOG"), where two images of random noise may both be
"random coloured noise". Drawn without fonts or Pillow's rasteriser (whose output may change
between versions): the same spec gives the same pixels on every platform's image, so ROCm and
CUDA see identical inputs.
"""

from __future__ import annotations

COLORS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "red": (220, 30, 30), "green": (30, 160, 60),
    "blue": (30, 60, 220), "yellow": (240, 210, 30), "orange": (245, 140, 20),
    "purple": (130, 50, 170), "grey": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "none")

# A 5x7 bitmap font: each glyph is 7 rows of 5 pixels ("#" ink).
_GLYPHS = {
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...#####.#...##...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "####.#...##...##...##...##...#####.",
    "E": "######....####.#....#....#....#####", "F": "######....####.#....#....#....#....",
    "G": ".###.#...##....#.####...##...#.###.", "H": "#...##...#######...##...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###...#....#....#....##..#..##...",
    "K": "#...##..#.###..#..#.#...##...##...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#", "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####.....###.....#....#....#####.",
    "T": "#####..#....#....#....#....#....#..", "U": "#...##...##...##...##...##...#.###.",
    "V": "#...##...##...##...##...#.#.#...#..", "W": "#...##...##...##.#.##.#.###.###...#",
    "X": "#...##...#.#.#...#...#.#.#...##...#", "Y": "#...##...#.#.#...#....#....#....#..",
    "Z": "#####....#...#...#...#...#....#####", " ": "." * 35,
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
}
GLYPH_CHARS = frozenset(_GLYPHS)


def scene_problem(pattern: str, shape: str, color: str, background: str, text: str) -> str:
    """Why these image fields are not a drawable scene ("" when they are)."""
    if pattern != "scene":
        if (shape, color, background, text) != ("none", "red", "white", ""):
            return "shape, color, background and text belong to `pattern: scene`"
        return ""
    for key, value in (("color", color), ("background", background)):
        if value not in COLORS:
            return f"{key} {value!r}: one of {sorted(COLORS)}"
    unknown = sorted(set(text) - GLYPH_CHARS)
    return f"text: no glyph for {unknown} (A-Z, 0-9 and space)" if unknown else ""


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
        glyph = _GLYPHS[char]
        for row in range(7):
            for col in range(5):
                if glyph[row * 5 + col] == "#":
                    gx, gy = left + (6 * i + col) * scale, top + row * scale
                    pixels[gy:gy + scale, gx:gx + scale] = ink
