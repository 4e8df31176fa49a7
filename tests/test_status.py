"""Reading the identity initContainer's outcome from a pod, as KubeSpawner's reflector holds it."""

from __future__ import annotations

from nfsuidspawner.status import init_failure, resolved_identity

REFUSAL = "nfsuid: user alice: /data/hpc/home/alice is owned by uid 0 (root). Fix: chown it"


def pod(*statuses: dict) -> dict:
    return {"status": {"initContainerStatuses": list(statuses)}}


def status(name: str = "nfsuid-identity", state: dict | None = None, last: dict | None = None):
    return {"name": name, "state": state or {}, "lastState": last or {}}


def terminated(code: int, message: str = "", reason: str = "Error") -> dict:
    return {"terminated": {"exitCode": code, "message": message, "reason": reason}}


def test_no_pod_and_no_status_are_not_failures() -> None:
    assert init_failure(None) is None
    assert init_failure({"status": {}}) is None
    assert init_failure(pod(status(state={"running": {}}))) is None


def test_refusal_is_the_termination_message() -> None:
    assert init_failure(pod(status(state=terminated(1, REFUSAL + "\n")))) == REFUSAL


def test_refusal_is_found_in_last_state_while_restarting() -> None:
    waiting = {"waiting": {"reason": "PodInitializing"}}
    assert init_failure(pod(status(state=waiting, last=terminated(1, REFUSAL)))) == REFUSAL


def test_exit_without_message_says_how_it_ended() -> None:
    assert init_failure(pod(status(state=terminated(137, reason="OOMKilled")))) == (
        "the nfsuid-identity initContainer exited with code 137 (OOMKilled)"
    )


def test_a_config_error_such_as_a_symlinked_subpath_is_a_failure() -> None:
    waiting = {
        "waiting": {"reason": "CreateContainerConfigError", "message": "subPath is a symlink"}
    }

    assert init_failure(pod(status(state=waiting))) == (
        "the nfsuid-identity initContainer cannot start: CreateContainerConfigError:"
        " subPath is a symlink"
    )


def test_other_init_containers_are_not_ours() -> None:
    assert init_failure(pod(status("block-cloud-metadata", state=terminated(1, "x")))) is None


def test_success_message_gives_the_resolved_identity() -> None:
    done = pod(status(state=terminated(0, "nfsuid: user alice runs as 2001:3001\n", "Completed")))

    assert init_failure(done) is None
    assert resolved_identity(done) == (2001, 3001)
