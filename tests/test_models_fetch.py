"""`harness models fetch`: against a hub-layout cache; the hub network is faked (named so)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import harness.commands.models as cmd_models
from harness.commands.cli import build_parser, main
from harness.models.hub import platform_hub_cache
from tests.conftest import CASES
from tests.hub_fixtures import fake_hub_cache, hub_platforms_file


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["models", "fetch", *argv])


def never_download(*args, **kwargs):
    raise AssertionError(f"nothing should be fetched: {args} {kwargs}")


class FakeHubDownload:
    """Stands in for huggingface_hub.snapshot_download (the hub network): writes the snapshot
    the real one would leave in the cache, from a local directory, and records the call."""

    def __init__(self, source: Path, commit: str):
        self.source, self.commit, self.calls = source, commit, []

    def __call__(self, repo_id, revision, cache_dir):
        from harness.models.hubcache import add_snapshot

        self.calls.append((repo_id, revision))
        # As the real one: a branch asked for is written as refs/<branch>; a commit is not.
        ref = None if revision == self.commit else revision
        return str(add_snapshot(Path(cache_dir), repo_id, self.commit, self.source, ref=ref))


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("hf")
    return home, fake_hub_cache(home)


def test_nothing_is_fetched_when_the_snapshots_are_present(tmp_path, hub_home, capsys):
    home, pinned = hub_home
    platforms = hub_platforms_file(tmp_path, home)
    code = cmd_models.run(parse("--platform", "cpu", "--platforms-file", str(platforms)),
                          download=never_download)
    out = capsys.readouterr().out
    assert code == 0, out
    for hub_id, revision in pinned.values():
        assert f"present    {hub_id}@{revision}" in out


def test_missing_snapshot_is_downloaded_once(tmp_path, capsys):
    home = tmp_path / "hf"
    source = tmp_path / "weights"
    source.mkdir()
    (source / "config.json").write_text("{}")
    platforms = hub_platforms_file(tmp_path, home)
    qwen_rev = "66285546d2b821cf421d4f5eb2576359d3770cd3"
    fake = FakeHubDownload(source, qwen_rev)
    args = parse("--platform", "cpu", "--platforms-file", str(platforms), "-k", "qwen")
    assert cmd_models.run(args, download=fake) == 0
    assert fake.calls == [("Qwen/Qwen2.5-VL-3B-Instruct", qwen_rev)]
    assert f"downloaded Qwen/Qwen2.5-VL-3B-Instruct@{qwen_rev}" in capsys.readouterr().out
    assert cmd_models.run(args, download=fake) == 0  # second time: present, no call
    assert len(fake.calls) == 1


def test_failed_download_is_one_line_and_exit_3(tmp_path, capsys):
    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable (fake: no network here)\nsecond line")

    platforms = hub_platforms_file(tmp_path, tmp_path / "hf")
    code = cmd_models.run(parse("--platform", "cpu", "--platforms-file", str(platforms),
                                "-k", "phi4mm"), download=offline)
    out = capsys.readouterr().out
    assert code == 3
    assert "failed     microsoft/Phi-4-multimodal-instruct@93f923e1" in out
    assert "ConnectionError: hub unreachable (fake: no network here)" in out
    assert "second line" not in out


def test_container_platforms_fetch_into_the_mounted_host_cache(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": "/elsewhere"}
    # The launcher mounts HF_HOME; the platform's own env is the container's, not ours.
    assert platform_hub_cache("container", {"HF_HOME": "/root/.cache/huggingface"}, env) == \
        tmp_path / "hf" / "hub"
    assert platform_hub_cache("local", {"HF_HOME": "/p"}, {"HOME": "/h"}) == Path("/p/hub")


def test_unknown_platform_is_a_usage_error(capsys):
    assert main(["models", "fetch", "--platform", "nope", "--cases", str(CASES)]) == 2
    assert "unknown platform" in capsys.readouterr().err


class FakeHubThatHangs:
    """Stands in for a hub that stops answering mid-download: the call blocks until released."""

    def __init__(self):
        import threading

        self.release, self.calls = threading.Event(), []

    def __call__(self, repo_id, revision, cache_dir):
        self.calls.append(repo_id)
        self.release.wait(60)
        raise ConnectionError("released by the test")


def test_a_hub_that_stops_answering_ends_the_fetch_at_its_deadline(tmp_path):
    """The fetch has its own deadline (the run step's timeout counts it): a hung download is
    a failure in seconds, not a step killed by Buildkite hours later."""
    import time

    from harness.models.fetch import fetch_hub

    hangs = FakeHubThatHangs()
    began = time.monotonic()
    try:
        done = fetch_hub([("org/model-a", "a" * 40), ("org/model-b", "b" * 40)],
                         tmp_path / "hub", "rocm", hangs, timeout_s=1.0)
    finally:
        hangs.release.set()
    assert time.monotonic() - began < 10
    assert [item.state for item in done] == ["failed", "failed"]
    assert "not finished within the fetch's 1 s deadline" in done[0].detail
    assert hangs.calls == ["org/model-a"]  # nothing more is started after the deadline
