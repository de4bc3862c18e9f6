"""Scene images: what a scene is (colours, shapes, the glyphs of its word) and its validation;
the worker draws it (harness.worker.scene_draw: a coloured shape and a short word on a coloured
background, with numpy).

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
GLYPHS = {
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
GLYPH_CHARS = frozenset(GLYPHS)


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
