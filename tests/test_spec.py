"""Case and platform YAML: safe loading, strict schema, file:line:key errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.spec.case import SpecError, load_case, load_platforms, validate_paths
from tests.conftest import CASES

QWEN = "qwen2_5_vl_vit_cudagraph.yaml"


def run_validate(capsys, *paths: Path) -> tuple[int, str]:
    code = main(["validate", *map(str, paths)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_repository_cases_validate(capsys):
    code, output = run_validate(capsys, CASES)
    assert code == 0, output


def test_both_cases_and_three_platforms_load():
    platforms = load_platforms(CASES / "platforms.yaml")
    assert {"rocm", "cuda", "cpu"} <= set(platforms)
    qwen = load_case(CASES / QWEN)
    assert qwen.id == "qwen2_5_vl_vit_cudagraph"
    assert qwen.engine.args["compilation_config"] == {"cudagraph_mm_encoder": True}
    assert qwen.model.hub == "Qwen/Qwen2.5-VL-3B-Instruct"
    phi = load_case(CASES / "phi4mm_variable_crop.yaml")
    assert phi.model.hub == "microsoft/Phi-4-multimodal-instruct"
    sizes = {(i.width, i.height) for i in phi.inputs.images}
    assert len(sizes) == 3  # very different sizes: different crop counts


def insert_after(text: str, anchor: str, addition: str) -> str:
    assert anchor in text
    return text.replace(anchor, anchor + addition, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_unknown_key_names_file_line_and_key_path(cases_copy, capsys):
    path = cases_copy / QWEN
    text = insert_after(path.read_text(), "    max_num_seqs: 2\n", "    max_num_sqes_typo: 3\n")
    text = text.replace("  startup_timeout_s: 900\n", "  startup_timeout_s: 900\n  warmup: yes\n")
    path.write_text(text)
    code, output = run_validate(capsys, path)
    assert code == 2
    expected_line = line_of(text, "  warmup: yes")
    assert f"{path}:{expected_line}: engine.warmup: unknown key" in output


def test_python_object_tag_is_refused_with_its_line(cases_copy, capsys):
    path = cases_copy / "phi4mm_variable_crop.yaml"
    text = path.read_text().replace(
        "title: Phi-4", "title: !!python/object/apply:os.system ['echo pwned']\nx: Phi-4", 1)
    path.write_text(text)
    code, output = run_validate(capsys, path)
    assert code == 2
    assert re.search(rf"{re.escape(str(path))}:1: .*tag not allowed.*python/object", output)
    assert "pwned" not in output.split("tag")[0]


def test_wrong_type_names_the_nested_key(cases_copy, capsys):
    path = cases_copy / QWEN
    text = path.read_text().replace("{id: tall, prompt: \"Describe this image.\", images: [tall], "
                                    "max_tokens: 12}",
                                    "{id: tall, prompt: \"Describe this image.\", images: [tall], "
                                    "max_tokens: twelve}")
    path.write_text(text)
    code, output = run_validate(capsys, path)
    assert code == 2
    assert f"{path}:{line_of(text, 'max_tokens: twelve')}: requests[1].max_tokens:" in output
    assert "integer" in output


def test_missing_required_field(cases_copy):
    path = cases_copy / QWEN
    path.write_text(path.read_text().replace("  hub: Qwen/Qwen2.5-VL-3B-Instruct\n", ""))
    with pytest.raises(SpecError) as info:
        load_case(path)
    assert info.value.key == "model.hub"
    assert "required key is missing" in str(info.value)
    assert info.value.line == line_of(path.read_text(), "model:")


def test_bad_check_field_inside_discriminated_union(cases_copy):
    path = cases_copy / QWEN
    text = path.read_text().replace("    probe: act_and_mul_compile_native",
                                    "    probe: act_and_mul_compile_native\n    severity: high")
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_case(path)
    assert info.value.key == "checks[5].severity"
    assert info.value.line == line_of(text, "severity: high")


def test_duplicate_key_is_an_error(cases_copy):
    path = cases_copy / QWEN
    text = path.read_text().replace("tags: [", "title: again\ntags: [", 1)
    path.write_text(text)
    with pytest.raises(SpecError, match="duplicate key"):
        load_case(path)


def test_unknown_image_reference(cases_copy):
    path = cases_copy / QWEN
    path.write_text(path.read_text().replace("images: [square, wide]", "images: [square, nope]"))
    with pytest.raises(SpecError, match="unknown images"):
        load_case(path)


def test_secret_in_platform_env_by_value_is_refused(cases_copy):
    path = cases_copy / "platforms.yaml"
    path.write_text(path.read_text().replace("      HF_HUB_OFFLINE: \"1\"\n",
                                             "      HF_TOKEN: hf_abc\n", 1))
    with pytest.raises(SpecError, match="HF_TOKEN looks like a secret"):
        load_platforms(path)


def test_override_for_unknown_platform(cases_copy):
    path = cases_copy / QWEN
    text = path.read_text()
    text = text[:text.index("\nplatforms:")]  # the case's own GPU overrides, replaced here
    path.write_text(text + "\nplatforms:\n  tpu:\n    skip: no such platform\n")
    errors = validate_paths([cases_copy])
    assert len(errors) == 1
    assert errors[0].key == "platforms.tpu" and "unknown platform" in errors[0].message


def test_invalid_yaml_syntax_has_a_line(cases_copy, capsys):
    path = cases_copy / QWEN
    path.write_text(path.read_text().replace("tags: [multimodal", "tags: [multimodal: ["))
    code, output = run_validate(capsys, path)
    assert code == 2 and f"{path}:" in output


def test_missing_path(capsys, tmp_path):
    code, output = run_validate(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "no such file" in output
