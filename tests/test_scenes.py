"""Scene images for outputs_differ: same size, different meaning, the same pixels every time."""

from __future__ import annotations

import numpy as np
import pytest

from harness.spec.case import ImageInput, SpecError, check_registries, load_case
from harness.worker.inputs import make_image
from tests.conftest import CASES


def scene(**kw) -> ImageInput:
    return ImageInput(name="s", width=640, height=160, pattern="scene", **kw)


def test_the_qwen_case_compares_two_scenes_of_one_size_and_different_meaning():
    case = load_case(CASES / "qwen2_5_vl_vit_cudagraph.yaml")
    [differ] = [c for c in case.checks if c.kind == "outputs_differ"]
    images = {i.name: i for i in case.inputs.images}
    compared = [images[n] for r in case.requests if r.id in differ.requests for n in r.images]
    assert all(i.pattern == "scene" for i in compared)
    assert len({(i.width, i.height) for i in compared}) == 1
    assert len({(i.shape, i.color, i.background, i.text) for i in compared}) == len(compared)
    assert {i.text for i in compared} == {"CAT", "DOG"}
    assert "must name what differs" in differ.description


def test_a_scene_is_deterministic_and_draws_its_shape_colour_and_word():
    a = np.asarray(make_image(scene(shape="circle", color="red", text="CAT"), CASES))
    assert np.array_equal(a, np.asarray(make_image(scene(shape="circle", color="red",
                                                         text="CAT"), CASES)))
    red = (a == (220, 30, 30)).all(axis=-1)
    assert red[:, :320].mean() > 0.25 and not red[:, 320:].any()  # the shape on the left
    ink = (a == (0, 0, 0)).all(axis=-1)
    assert ink[:, 320:].mean() > 0.05 and not ink[:, :320].any()  # the word on the right
    b = np.asarray(make_image(scene(shape="square", color="blue", background="yellow",
                                    text="DOG"), CASES))
    assert a.shape == b.shape and (a != b).any(axis=-1).mean() > 0.5


@pytest.mark.parametrize("bad, message", [
    ({"color": "mauve"}, "color 'mauve'"), ({"text": "cat"}, "no glyph"),
    ({"background": "#fff"}, "background")])
def test_bad_scenes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        scene(**bad)
    with pytest.raises(ValueError, match="belong to `pattern: scene`"):
        ImageInput(name="n", width=64, height=64, pattern="noise", text="CAT")


def test_outputs_differ_refuses_two_identical_scenes(tmp_path):
    text = (CASES / "qwen2_5_vl_vit_cudagraph.yaml").read_text().replace(
        "shape: square, color: blue,\n       background: yellow, text: DOG",
        "shape: circle, color: red,\n       background: white, text: CAT")
    path = tmp_path / "qwen2_5_vl_vit_cudagraph.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="same content"):
        check_registries(load_case(path))
