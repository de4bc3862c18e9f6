"""What a container's exit says (harness.host.launch.container_exit): pure, from recorded states.

The real engines give these exits in tests/test_container_real.py; here every branch, including
those the engines can only give by breaking an image, is pinned down.
"""

from __future__ import annotations

import pytest

from harness.host.launch.container_exit import classify_exit, last_line, oom_killed
from harness.host.launch.start_worker import WorkerOutcome


def outcome(tmp_path, code, log="", **flags) -> WorkerOutcome:
    path = tmp_path / "client.log"
    path.write_text(log)
    return WorkerOutcome(returncode=code, timed_out=flags.get("timed_out", False),
                         interrupted=flags.get("interrupted", False), duration_s=1.0,
                         log_path=path)


def classify(tmp_path, code, log="", state=None, **flags):
    return classify_exit(outcome(tmp_path, code, log, **flags),
                         {"Running": False} if state is None else state,
                         engine="docker", image="reg/img:tag", container="harness-x",
                         python="python3", how_to_get=lambda: "harness image pull")


@pytest.mark.parametrize("code,log,expected", [
    (125, "Unable to find image 'reg/img:tag' locally\nmanifest unknown", "image-missing"),
    (125, "error: could not select device driver", "container-start"),
    (126, "exec format error", "container-start"),
    (127, "", "command-not-found"),
])
def test_engine_exit_codes(tmp_path, code, log, expected):
    failure_class, message = classify(tmp_path, code, log)
    assert failure_class == expected and "reg/img:tag" in message
    if expected == "image-missing":
        assert "harness image pull" in message


def test_a_container_gone_before_inspect_is_lost_and_ordinary_exits_say_nothing(tmp_path):
    assert classify(tmp_path, 1, state={})[0] == "container-lost"
    assert classify(tmp_path, 1) is None  # pytest's own exit: the results say the rest
    assert classify(tmp_path, 125, timed_out=True) is None  # our deadline explains it
    assert classify(tmp_path, None) is None


def test_sigkill_is_oom_unless_the_harness_killed_it(tmp_path):
    assert oom_killed({"OOMKilled": True}, 1, outcome(tmp_path, 1))
    assert oom_killed({"OOMKilled": False}, 137, outcome(tmp_path, 137))  # podman/runc, cgroup v1
    assert not oom_killed({"OOMKilled": False}, 137, outcome(tmp_path, 137, timed_out=True))
    assert not oom_killed({}, 137, outcome(tmp_path, 137))  # nothing inspected: no claim


@pytest.mark.parametrize("state", [{"Status": "removing", "ExitCode": 137},
                                   {"Status": "dead", "Dead": True, "ExitCode": 137}])
def test_a_container_someone_is_removing_is_lost_not_oom(tmp_path, state):
    """docker's `rm -f` by someone else, inspected between its kill and its removal (seen on a
    loaded host): exit 137 with the container still listed is a lost container, no OOM."""
    assert not oom_killed(state, 137, outcome(tmp_path, 137))
    assert classify(tmp_path, 137, state=state)[0] == "container-lost"


def test_last_line_skips_blank_lines_and_is_bounded():
    assert last_line("first\nsecond\n\n  \n") == "second"
    assert len(last_line("x" * 1000)) == 300 and last_line("") == ""
