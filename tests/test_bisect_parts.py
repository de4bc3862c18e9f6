"""harness/bisect around the search: state file, candidates, registry API, step verdicts,
reports, the suggested command line."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.host.bisect.candidates import (CandidateError, by_creation_time, cut_range,
                                       read_candidates_file, resolve, tag_of)
from harness.bisect_command import BisectRequest, image_repository, suggest
from harness.host.bisect.registry import Repository, RegistryError, registry_candidates
from harness.host.bisect.report import Summary, commit_range, markdown, terminal
from harness.host.bisect.search import Done, decide
from harness.host.bisect.state import (BisectState, Candidate, StateError, Step, bisect_id,
                                  check_same_request, load_state, save_state, state_path)
from harness.host.bisect.step import classify
from harness.results import LogInfo, Result


def make_state(n: int = 8, **changes) -> BisectState:
    data = dict(id="phi-x", case="phi4mm_variable_crop", platform="cpu-podman", good="v0",
                bad=f"v{n - 1}", confirmations=1, verify_ends=True, source="file:c.txt",
                candidates=[Candidate(ref=f"127.0.0.1:5000/vllm/x:v{i}",
                                      labels={"org.opencontainers.image.version": f"0.{i}"})
                            for i in range(n)])
    data.update(changes)
    return BisectState(**data)


# ---------------------------------------------------------------- state file


def test_state_round_trips_atomically_and_resumes(tmp_path):
    state = make_state()
    state.steps.append(Step(number=1, name="01-verify-bad-v7", candidate=7, purpose="verify-bad",
                            outcome="fail", status="failed", failure_class="crash"))
    save_state(tmp_path, state)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left
    loaded = load_state(tmp_path)
    assert loaded == state and decide(loaded.config(), loaded.runs()).purpose == "confirm"
    assert load_state(tmp_path / "none") is None


def test_a_changed_request_is_refused_by_name(tmp_path):
    with pytest.raises(StateError, match="confirmations=1, now 2"):
        check_same_request(make_state(), make_state(confirmations=2), tmp_path / "state.json")
    check_same_request(make_state(), make_state(candidates=[]), tmp_path)  # list is the saved one


def test_a_corrupt_state_file_is_named(tmp_path):
    state_path(tmp_path).write_text(json.dumps({"version": 1, "id": "x"}))
    with pytest.raises(StateError, match=r"state\.json: case: Field required"):
        load_state(tmp_path)


def test_bisect_id_is_stable_and_a_valid_run_id():
    a = bisect_id("phi4mm_variable_crop", "rocm", "nightly-aaa", "nightly-bbb")
    assert a == bisect_id("phi4mm_variable_crop", "rocm", "nightly-aaa", "nightly-bbb")
    assert a != bisect_id("phi4mm_variable_crop", "rocm", "nightly-aaa", "nightly-ccc")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]+", a)


# ---------------------------------------------------------------- candidates


def test_candidates_file_order_comments_and_errors(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("# oldest first\nreg/x:a\n\nreg/x:b  # the night after\nreg/x:c\n")
    assert [c.ref for c in read_candidates_file(path)] == ["reg/x:a", "reg/x:b", "reg/x:c"]
    path.write_text("reg/x:a\nreg/x:a\n")
    with pytest.raises(CandidateError, match=r"c\.txt:2: reg/x:a already listed on line 1"):
        read_candidates_file(path)
    path.write_text("reg/x:a\nnot a ref\n")
    with pytest.raises(CandidateError, match=r"c\.txt:2: 'not a ref' is not"):
        read_candidates_file(path)
    with pytest.raises(CandidateError, match="cannot read"):
        read_candidates_file(tmp_path / "missing.txt")


def test_range_is_cut_by_full_reference_or_tag():
    listed = [Candidate(ref=f"127.0.0.1:5000/x:v{i}") for i in range(6)]
    assert [c.ref for c in cut_range(listed, "v1", "127.0.0.1:5000/x:v4")] == [
        f"127.0.0.1:5000/x:v{i}" for i in range(1, 5)]
    with pytest.raises(CandidateError, match="must come before"):
        cut_range(listed, "v4", "v1")
    with pytest.raises(CandidateError, match="--good v9: not among"):
        resolve(listed, "v9", "good")
    assert tag_of("127.0.0.1:5000/x:v1") == "v1" and tag_of("127.0.0.1:5000/x") == ""
    assert tag_of("reg/x:v1@sha256:ab") == "v1"


def test_creation_time_order_handles_fractions_and_refuses_unknown():
    listed = [Candidate(ref="r/x:b", created="2026-11-30T10:00:00.5Z"),
              Candidate(ref="r/x:a", created="2026-11-30T10:00:00Z"),
              Candidate(ref="r/x:c", created="2026-11-30T10:00:00.123456789+00:00")]
    assert [c.ref for c in by_creation_time(listed)] == ["r/x:a", "r/x:c", "r/x:b"]
    with pytest.raises(CandidateError, match="no creation time for r/x:d"):
        by_creation_time(listed + [Candidate(ref="r/x:d")])


# ---------------------------------------------------------------- registry API


class FakeRegistry(BaseHTTPRequestHandler):
    """A FAKE registry standing in for Docker Hub's token flow (the hub network cannot be
    reached here); the real loopback registry is exercised in tests/test_bisect_real.py."""

    images: dict[str, tuple[str, dict]] = {}
    page = 2

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        host = f"http://{self.headers['Host']}"
        if self.path.startswith("/token"):
            assert re.search(r"scope=repository%3Avllm%2F\w%3Apull", self.path)
            return self._send(200, {"token": "anon"})
        if self.headers.get("Authorization") != "Bearer anon":
            return self._send(401, {"errors": []}, {
                "WWW-Authenticate": f'Bearer realm="{host}/token",service="fake"'})
        tags = sorted(self.images)
        if not self.path.startswith("/v2/vllm/x/"):
            return self._send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        if "/tags/list" in self.path:
            last = re.search(r"last=([^&]+)", self.path)
            start = tags.index(last.group(1)) + 1 if last else 0
            chunk = tags[start:start + self.page]
            headers = {}
            if start + self.page < len(tags):
                headers["Link"] = f'</v2/vllm/x/tags/list?n={self.page}&last={chunk[-1]}>; rel="next"'
            return self._send(200, {"name": "vllm/x", "tags": chunk}, headers)
        if "/manifests/" in self.path:
            ref = self.path.rsplit("/", 1)[1]
            if ref in self.images:  # an index pointing at the amd64 manifest
                return self._send(200, headers={"Docker-Content-Digest": f"sha256:idx-{ref}"},
                                  body={"mediaType": "application/vnd.oci.image.index.v1+json",
                                        "manifests": [{"digest": f"sha256:{ref}-arm",
                                                       "platform": {"os": "linux", "architecture": "arm64"}},
                                                      {"digest": f"sha256:{ref}",
                                                       "platform": {"os": "linux", "architecture": "amd64"}}]})
            return self._send(200, {"config": {"digest": "cfg-" + ref.split(":")[1]}})
        if "/blobs/cfg-" in self.path:
            tag = self.path.split("/blobs/cfg-")[1]
            created, labels = self.images[tag]
            return self._send(200, {"created": created, "config": {"Labels": labels}})
        return self._send(404, {"errors": [{"code": "NOT_FOUND"}]})


@pytest.fixture
def fake_registry():
    FakeRegistry.images = {f"t{i}": (f"2026-11-{20 + (i * 3) % 7}T00:00:00Z", {"v": str(i)})
                           for i in range(5)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_registry_tags_pages_token_and_index(fake_registry):
    found = registry_candidates(f"{fake_registry}/vllm/x")
    assert [c.ref for c in found] == [f"{fake_registry}/vllm/x:t{i}" for i in range(5)]
    assert found[2].labels == {"v": "2"} and found[2].created == "2026-11-26T00:00:00Z"
    assert found[2].digest == "sha256:idx-t2"  # the tag's own digest (the index), as pulled
    # created: t0 11-20, t1 11-23, t2 11-26, t3 11-22, t4 11-25
    assert [c.ref.rsplit(":", 1)[1] for c in by_creation_time(found)] == [
        "t0", "t3", "t1", "t4", "t2"]
    only = registry_candidates(f"{fake_registry}/vllm/x", pattern="t[13]")
    assert [c.ref.rsplit(":", 1)[1] for c in only] == ["t1", "t3"]
    with pytest.raises(RegistryError, match="no tag matches"):
        registry_candidates(f"{fake_registry}/vllm/x", pattern="nightly-.*")


def test_registry_errors_name_the_url(fake_registry):
    with pytest.raises(RegistryError, match=r"/v2/vllm/y/tags/list\?n=1000: HTTP 404 .*NAME_UNKNOWN"):
        registry_candidates(f"{fake_registry}/vllm/y")
    with pytest.raises(RegistryError, match="ConnectionError"):
        registry_candidates("127.0.0.1:1/vllm/x")


def test_repository_names():
    hub = Repository.parse("vllm/vllm-openai-rocm")
    assert (hub.host, hub.path, hub.scheme) == ("registry-1.docker.io", "vllm/vllm-openai-rocm",
                                                "https")
    assert Repository.parse("ubuntu").path == "library/ubuntu"
    local = Repository.parse("127.0.0.1:5077/ns/name")
    assert (local.host, local.path, local.scheme, local.prefix) == (
        "127.0.0.1:5077", "ns/name", "http", "127.0.0.1:5077/ns/name")
    with pytest.raises(RegistryError, match="not a repository path"):
        Repository.parse("127.0.0.1:5077/Bad Name")


# ---------------------------------------------------------------- one step's verdict


def result(status: str, failure_class: str | None = None, message: str = "", tail: str = ""):
    return Result(run_id="r", job_id="c@p", case_id="c", platform="p", status=status,
                  failure_class=failure_class, message=message, log=LogInfo(tail=tail))


@pytest.mark.parametrize("res, outcome", [
    (result("passed"), "pass"),
    (result("failed", "crash", "'list' object has no attribute 'to'"), "fail"),
    (result("failed", "check-failed"), "fail"),
    (result("xfailed"), "fail"),
    (result("error", "timeout", "worker overran"), "infra"),
    (result("error", "oom"), "infra"),
    (result("error", "crash", "worker exited 125; no result written",
            "Error: initializing source docker://127.0.0.1:5/x:v3: manifest unknown"), "infra"),
    (result("skipped"), "infra"),
    (result("error", "interrupted"), None),
    (None, "infra"),
])
def test_step_outcomes(res, outcome):
    got, reason = classify(res, 125, interrupted=False, missing_why="missing")
    assert got == outcome
    if res is not None and "manifest unknown" in res.log.tail:
        assert "manifest unknown" in reason  # the cause, not only "worker exited 125"
    assert classify(res, 0, interrupted=True)[0] is None


# ---------------------------------------------------------------- reports


def finished_state() -> BisectState:
    state = make_state(8)
    plan = [(7, "verify-bad", "fail"), (7, "confirm", "fail"), (0, "verify-good", "pass"),
            (3, "step", "infra"), (4, "step", "pass"), (5, "step", "fail"), (5, "confirm", "fail")]
    for number, (cand, purpose, outcome) in enumerate(plan, 1):
        reason = {"infra": "crash: worker exited 125 (manifest unknown <script>)",
                  "fail": "crash: 'list' object has no attribute 'to'"}.get(outcome, "")
        state.steps.append(Step(number=number, name=f"{number:02d}-{purpose}-v{cand}",
                                candidate=cand, purpose=purpose, outcome=outcome,
                                status={"pass": "passed", "fail": "failed"}.get(outcome, "error"),
                                reason=reason, result=f"{number:02d}/cpu-podman/c.json",
                                fingerprint={"vllm": "0.32.0", "image_digest": "x@sha256:abc"}))
    return state


def test_report_names_ends_range_steps_skips_and_bound():
    state = finished_state()
    decision = decide(state.config(), state.runs())
    assert isinstance(decision, Done) and decision.first_bad == 5 and decision.last_good == 4
    text = terminal(Summary(state, decision, "harness bisect ..."))
    assert "first bad: 127.0.0.1:5000/vllm/x:v5" in text
    assert "last good: 127.0.0.1:5000/vllm/x:v4 (version=0.4, vllm 0.32.0" in text
    assert "skipped 127.0.0.1:5000/vllm/x:v3: crash: worker exited 125" in text
    assert "engine runs: 7 = 2 end check(s) + 3 step(s) + 2 confirmation(s)" in text
    assert "ceil(log2(8)) = 3" in text and "within the bound" in text
    md = markdown(Summary(state, decision, "harness bisect --case c"),
                  lambda rel: f"artifact://results/bisect-x/{rel}")
    assert "| first bad | `127.0.0.1:5000/vllm/x:v5` | version=0.5" in md
    assert "(artifact://results/bisect-x/06/cpu-podman/c.json)" in md
    assert "<script>" not in md and "&lt;script&gt;" in md  # escaped
    assert "`harness bisect --case c`" in md


def test_report_in_progress_and_problem():
    state = make_state(8)
    text = terminal(Summary(state, decide(state.config(), []), "cmd"))
    assert "in progress: 0 run(s) so far; next: 127.0.0.1:5000/vllm/x:v7 (verify-bad)" in text
    done = Done(None, None, problem="the bad end passed: no reproducible failure to bisect")
    assert "nothing found: the bad end passed" in markdown(Summary(state, done, "cmd"), str)


def test_commit_range_from_revision_labels_or_nightly_tags():
    state = make_state(3)
    state.candidates[0] = Candidate(ref="vllm/vllm-openai-rocm:nightly-1a2b3c4d")
    state.candidates[2] = Candidate(ref="vllm/vllm-openai-rocm:nightly-5e6f7a8b")
    summary = Summary(state, Done(0, 2), "cmd")
    assert commit_range(summary) == (
        "1a2b3c4d", "5e6f7a8b", "https://github.com/vllm-project/vllm/compare/1a2b3c4d...5e6f7a8b")


# ---------------------------------------------------------------- the command line


def test_suggested_command_line_round_trips_through_the_parser():
    from harness.commands.cli import build_parser

    line = suggest("phi4mm_variable_crop", "rocm", "reg:5000/vllm/x:nightly-a",
                   "reg:5000/vllm/x:nightly-b")
    assert line == ("harness bisect --case phi4mm_variable_crop --platform rocm --good "
                    "reg:5000/vllm/x:nightly-a --bad reg:5000/vllm/x:nightly-b "
                    "--tags-from reg:5000/vllm/x")
    args = build_parser().parse_args(line.split()[1:])
    assert (args.case, args.good, args.tags_from) == ("phi4mm_variable_crop",
                                                      "reg:5000/vllm/x:nightly-a", "reg:5000/vllm/x")
    assert suggest("c", "rocm", "a/x:1", "a/x:1") is None  # same image: no range
    assert suggest("c", "rocm", "a/x:1", "b/y:2") is None  # different repositories
    assert suggest("c", "rocm", None, "b/y:2") is None
    request = BisectRequest("c", "rocm", "g", "b", candidates="c.txt", confirmations=2,
                            verify_ends=False, results="out")
    args = build_parser().parse_args(request.argv())
    assert (args.candidates, args.confirmations, args.no_verify_ends, args.results) == (
        Path("c.txt"), 2, True, Path("out"))


# ---------------------------------------------------------------- the compare annotation


def test_compare_annotation_of_two_runs_shows_the_bisect_command(tmp_path):
    from harness.compare import compare_runs
    from harness.report.markdown import LinkStyle, render_markdown
    from tests.test_compare_data import PHI, failed, fingerprint, make_run

    repo = "127.0.0.1:5000/vllm/vllm-openai-rocm"
    night_1 = fingerprint(image=f"{repo}:nightly", image_digest=f"{repo}@sha256:{'a' * 64}")
    night_2 = fingerprint(image=f"{repo}:nightly", image_digest=f"{repo}@sha256:{'b' * 64}")
    good = make_run(tmp_path, {"rocm": {PHI: night_1}}, "build-1")
    bad = make_run(tmp_path, {"rocm": {PHI: lambda r: failed("'list' object has no attribute "
                                                            "'to'", "crash")(night_2(r))}},
                   "build-2")
    text = render_markdown(compare_runs([good, bad]), LinkStyle(relative_to=tmp_path))
    expected = suggest(PHI, "rocm", f"{repo}@sha256:{'a' * 64}", f"{repo}@sha256:{'b' * 64}")
    assert expected and f"find the first bad image: `{expected}`" in text
    assert f"--tags-from {repo}" in expected
    # The same image on both sides (nothing between them), or one run of two platforms: none.
    same = make_run(tmp_path, {"rocm": {PHI: lambda r: failed()(night_1(r))}}, "build-3")
    assert "harness bisect" not in render_markdown(compare_runs([good, same]))
    cross = make_run(tmp_path, {"cuda": None, "rocm": {PHI: failed()}}, "build-4")
    assert "harness bisect" not in render_markdown(compare_runs([cross], "cuda", ["rocm"]))


def test_a_digest_reference_resolves_to_its_tag():
    listed = [Candidate(ref="r:5/x:n1", digest="sha256:aa"), Candidate(ref="r:5/x:n2",
                                                                        digest="sha256:bb")]
    assert resolve(listed, "r:5/x@sha256:bb", "bad") == 1
    assert image_repository("r:5/x@sha256:bb") == "r:5/x"
    assert image_repository("r:5/x:n1") == "r:5/x" and image_repository("sha256:00") is None


# ---------------------------------------------------------------- the dashboard


def test_dashboard_newly_broken_mark_shows_the_bisect_command(tmp_path):
    from harness.commands.cli import main
    from tests.test_compare_data import PHI, failed, fingerprint, make_run

    repo = "127.0.0.1:5000/vllm/vllm-openai-rocm"
    digests = {night: f"{repo}@sha256:{c * 64}" for night, c in ((1, "a"), (2, "b"))}
    results = tmp_path / "results"
    good = make_run(results, {"rocm": {PHI: fingerprint(image_digest=digests[1])}}, "build-1")
    bad = make_run(results, {"rocm": {PHI: lambda r: failed("'list' object", "crash")(
        fingerprint(image_digest=digests[2])(r))}}, "build-2")
    db, out = results / "history.sqlite", results / "dashboard.html"
    assert main(["ingest", "--db", str(db), str(good), str(bad)]) == 0
    assert main(["dashboard", "--db", str(db), "--out", str(out)]) == 0
    page = out.read_text()
    expected = suggest(PHI, "rocm", digests[1], digests[2])
    assert expected is not None
    assert f'<div class="bisect">find the first bad image: <code>{expected}</code></div>' in page


# ---------------------------------------------------------------- the image declares mutations


@pytest.mark.parametrize("host_value, passed", [(None, False), ("", False),
                                                ("phi4mm_revert_stack_with_pad", True)])
def test_the_image_env_decides_the_mutation_unless_the_host_sets_one(tmp_path, host_value,
                                                                     passed):
    """HARNESS_MUTATIONS reaches the container by name only when the host sets a value; else
    `docker run` passes nothing and the image's own ENV (a bisect candidate's) is what runs."""
    from harness.host.launch.container import ContainerLaunch
    from harness.host.launch.local import WorkerRequest
    from harness.spec.case import load_platforms
    from tests.conftest import CASES, REPO

    platform = load_platforms(CASES / "platforms.yaml")["cpu-podman"]
    environ = {"HOME": str(tmp_path)}
    if host_value is not None:
        environ["HARNESS_MUTATIONS"] = host_value
    request = WorkerRequest(platform, sorted(CASES.glob("*_*.yaml")), CASES / "platforms.yaml",
                            tmp_path / "results", "b-1", None, REPO)
    argv = ContainerLaunch(request, environ=environ).argv()
    options = argv[:argv.index(platform.image)]
    assert ("HARNESS_MUTATIONS" in options) is passed
    assert not any(a.startswith("HARNESS_MUTATIONS=") for a in options)  # never by value
