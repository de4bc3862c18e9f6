"""Planning is pure: jobs, stable ids, skips, -k selection, overrides."""

from __future__ import annotations

import yaml

from harness.commands.cli import main
from harness.plan import digest, merge, plan, plan_job
from harness.spec.case import load_cases, load_platforms
from tests.conftest import CASES


def load(cases_dir=CASES):
    return load_cases([cases_dir]), load_platforms(cases_dir / "platforms.yaml")


def test_six_jobs_for_two_cases_on_three_platforms(capsys):
    assert main(["plan", "--cases", str(CASES), "--platform", "rocm,cuda,cpu"]) == 0
    out = capsys.readouterr().out
    assert "6 job(s)" in out
    for case in ("qwen2_5_vl_vit_cudagraph", "phi4mm_variable_crop"):
        for platform in ("rocm", "cuda", "cpu"):
            assert f"{case}@{platform}" in out


def _reorder(node):
    """The same YAML data with every mapping's keys in reverse order."""
    if isinstance(node, dict):
        return {k: _reorder(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reorder(item) for item in node]
    return node


def test_ids_and_digests_survive_reordering_yaml_keys(cases_copy):
    before = plan(*load(), ["rocm", "cuda", "cpu"])
    for path in cases_copy.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(_reorder(data), sort_keys=False))
    after = plan(*load(cases_copy), ["rocm", "cuda", "cpu"])
    assert [(j.id, j.config_digest, j.engine_key) for j in before] == \
           [(j.id, j.config_digest, j.engine_key) for j in after]


def test_digest_changes_when_configuration_changes(cases_copy):
    (cases_copy / "qwen2_5_vl_vit_cudagraph.yaml").write_text(
        (cases_copy / "qwen2_5_vl_vit_cudagraph.yaml").read_text()
        .replace("max_num_seqs: 2", "max_num_seqs: 3"))
    before = {j.id: j.config_digest for j in plan(*load(), ["cpu"])}
    after = {j.id: j.config_digest for j in plan(*load(cases_copy), ["cpu"])}
    assert before["qwen2_5_vl_vit_cudagraph@cpu"] != after["qwen2_5_vl_vit_cudagraph@cpu"]
    assert before["phi4mm_variable_crop@cpu"] == after["phi4mm_variable_crop@cpu"]


def test_keyword_selection_uses_pytest_grammar():
    cases, platforms = load()
    everything = ["rocm", "cuda", "cpu"]
    assert [j.id for j in plan(cases, platforms, everything, "phi4mm and not rocm")] == \
        ["phi4mm_variable_crop@cuda", "phi4mm_variable_crop@cpu"]
    assert len(plan(cases, platforms, everything, "pr43647")) == 6  # tags are keywords
    assert plan(cases, platforms, everything, "nothing_matches") == []


def test_unknown_platform_is_an_error(capsys):
    assert main(["plan", "--cases", str(CASES), "--platform", "tpu"]) == 2
    assert "unknown platform" in capsys.readouterr().err


def test_override_merges_args_and_sets_expectation_and_skip(cases_copy):
    platforms_yaml = cases_copy / "platforms.yaml"
    platforms_yaml.write_text(platforms_yaml.read_text().replace(
        "      HF_HUB_OFFLINE: \"1\"\n    pass_env: [HF_TOKEN]\n    queue: amd_mi300_1",
        "      HF_HUB_OFFLINE: \"1\"\n      HIP_FORCE_DEV_KERNARG: '1'\n    pass_env: [HF_TOKEN]\n"
        "    queue: amd_mi300_1"))
    path = cases_copy / "qwen2_5_vl_vit_cudagraph.yaml"
    text = path.read_text()
    text = text[:text.index("\nplatforms:")]  # the case's own GPU overrides, replaced here
    path.write_text(text + (
        "\nplatforms:\n"
        "  rocm:\n"
        "    engine_args: {compilation_config: {mode: 0}}\n"
        "    env: {VLLM_ROCM_USE_AITER: '1'}\n"
        "    expect: {outcome: xfail, reason: known ROCm bug, link: 'https://example.org/1'}\n"
        "  cuda:\n"
        "    skip: no H100 in this pool\n"))
    cases, platforms = load(cases_copy)
    jobs = {j.id: j for j in plan(cases, platforms, ["rocm", "cuda", "cpu"])}
    rocm = jobs["qwen2_5_vl_vit_cudagraph@rocm"]
    assert rocm.engine_args["compilation_config"] == {"cudagraph_mm_encoder": True, "mode": 0}
    assert rocm.env == {"HF_HUB_OFFLINE": "1", "HIP_FORCE_DEV_KERNARG": "1", "VLLM_ROCM_USE_AITER": "1"}
    assert rocm.expect.outcome == "xfail" and rocm.expect.link
    assert jobs["qwen2_5_vl_vit_cudagraph@cuda"].skip_reason == "no H100 in this pool"
    assert jobs["qwen2_5_vl_vit_cudagraph@cpu"].skip_reason is None


def test_model_source_follows_platform():
    cases, platforms = load()
    qwen = next(c for c in cases if c.id.startswith("qwen"))
    assert plan_job(qwen, platforms["rocm"]).model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert plan_job(qwen, platforms["cpu"]).model == "qwen2_5_vl_tiny"
    assert plan_job(qwen, platforms["cpu"]).engine_args["dtype"] == "float32"


def test_merge_is_deep_for_mappings_only():
    assert merge({"a": {"x": 1, "y": 2}, "l": [1]}, {"a": {"y": 3}, "l": [2]}) == \
        {"a": {"x": 1, "y": 3}, "l": [2]}


def test_digest_ignores_key_order():
    assert digest({"a": 1, "b": {"c": 2, "d": 3}}) == digest({"b": {"d": 3, "c": 2}, "a": 1})


def test_bad_keyword_expression_is_a_usage_error(capsys):
    assert main(["plan", "--cases", str(CASES), "-k", "qwen and ("]) == 2
    assert "bad -k expression" in capsys.readouterr().err


def test_shards_partition_each_platforms_jobs():
    from harness.commands.cli import select_shard_jobs

    cases, platforms = load()
    jobs = plan(cases, platforms, ["rocm", "cuda"])
    shards = [select_shard_jobs(jobs, i, 2) for i in range(2)]
    ids = sorted(j.id for shard in shards for j in shard)
    assert ids == sorted(j.id for j in jobs)
    assert all({j.platform.name for j in shard} == {"rocm", "cuda"} for shard in shards)
    assert select_shard_jobs(jobs, None, None) == jobs


def test_platforms_off_by_default_are_selected_only_by_name(capsys):
    assert main(["plan", "--cases", str(CASES)]) == 0
    out = capsys.readouterr().out
    assert "@cpu-podman" not in out and "@rocm" in out
    assert main(["plan", "--cases", str(CASES), "--platform", "cpu-podman"]) == 0
    assert "phi4mm_variable_crop@cpu-podman" in capsys.readouterr().out
