"""Deterministic inputs: images made from (size, pattern, seed), or read from files."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from harness.spec.case import Case, ImageInput
from harness.worker.engine import PreparedRequest


def make_image(spec: ImageInput, base_dir: Path):
    """A PIL image; the same spec gives the same pixels on every machine (numpy's PCG64)."""
    import numpy as np
    from PIL import Image

    if spec.file:
        return Image.open(base_dir / spec.file).convert("RGB")
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    if spec.pattern == "scene":
        from harness.worker.scene_draw import draw_scene

        pixels = draw_scene(w, h, spec.shape, spec.color, spec.background, spec.text)
    elif spec.pattern == "noise":
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    else:
        y, x = np.mgrid[0:h, 0:w]
        base = rng.integers(0, 256, size=3)
        if spec.pattern == "gradient":
            grey = (x * 255 // max(w - 1, 1) + y * 255 // max(h - 1, 1)) // 2
        elif spec.pattern == "checker":
            cell = int(rng.integers(8, 33))
            grey = ((x // cell + y // cell) % 2) * 255
        else:  # stripes
            period = int(rng.integers(6, 25))
            grey = ((x // period) % 2) * 255
        pixels = ((grey[..., None] + base[None, None, :]) % 256).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def inputs_digest(case: Case) -> str:
    """What the requests send (prompts, image specs): two results with different digests were
    asked different things, so their outputs are not compared (harness.compare.core)."""
    import hashlib
    import json

    spec = {"images": [i.model_dump(mode="json") for i in case.inputs.images],
            "requests": [r.model_dump(mode="json") for r in case.requests]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: the pixels the engine sees are the ones we made
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def prepare_requests(case: Case) -> list[PreparedRequest]:
    base_dir = Path(case.source).parent if case.source else Path.cwd()
    images = {spec.name: make_image(spec, base_dir) for spec in case.inputs.images}
    prepared = []
    for request in case.requests:
        content: list[dict] = [{"type": "image_url", "image_url": {"url": data_url(images[name])}}
                               for name in request.images]
        content.append({"type": "text", "text": request.prompt})
        prepared.append(PreparedRequest(
            id=request.id, messages=[{"role": "user", "content": content}],
            max_tokens=request.max_tokens, images=list(request.images),
            image_sizes=[list(images[name].size) for name in request.images]))
    return prepared
