"""The sandbox runtime: pod spec -> container config (pure), and the shim run directly (root)."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nfsuidspawner.sandbox import runtime, shim
from nfsuidspawner.sandbox.pod import SHIM_FLAGS
from nfsuidspawner.sandbox.runtime import ContainerConfigError, container_config

Obj = dict[str, Any]
POD: Obj = {"metadata": {"name": "jupyter-alice", "namespace": "ns", "uid": "u-1"}, "spec": {}}


def config(container: Obj, pod: Obj = POD, volumes: dict[str, str] | None = None,
           tmp: Path = Path("/nonexistent")) -> Obj:  # fmt: skip
    return container_config(
        pod, {"name": "c", **container}, pod_ip="127.0.90.7", volumes=volumes or {},
        rootfs=str(tmp / "rootfs"), termination_log=str(tmp / "tlog"),
        start_error_file=str(tmp / "start-error"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "image, expected",
    [
        ("quay.io/jupyter/scipy-notebook:2025-01-13", True),
        ("jupyter/base-notebook", True),
        ("docker.io/jupyter/minimal-notebook:latest", True),
        ("docker.io/library/busybox:1.37", False),
        ("quay.io/jupyterhub/k8s-singleuser-sample:4.4.0", False),
    ],
    ids=["quay-scipy", "hub-short", "docker-io", "busybox", "z2jh-sample"],
)
def test_docker_stacks_images_are_recognised_by_name(image: str, expected: bool) -> None:
    assert runtime.is_docker_stacks(image) is expected


def test_args_replace_the_docker_stacks_cmd_but_keep_start_sh() -> None:
    cfg = config(
        {"image": "quay.io/jupyter/base-notebook:2025-01-13", "args": ["start-singleuser.py"]}
    )
    assert cfg["argv"] == ["start.sh", "start-singleuser.py"]
    assert (cfg["uid"], cfg["gid"]) == (1000, 100)


def test_command_replaces_the_entrypoint() -> None:
    cfg = config({"image": "quay.io/jupyter/base-notebook:2025-01-13", "command": ["jupyterhub-singleuser"],
                  "args": ["--debug"]})  # fmt: skip
    assert cfg["argv"] == ["jupyterhub-singleuser", "--debug"]


def test_service_url_and_ip_arg_bind_the_pod_ip_instead_of_0000() -> None:
    cfg = config({
        "image": "quay.io/jupyter/base-notebook:2025-01-13", "args": ["start-singleuser.py", "--ip=0.0.0.0"],
        "env": [{"name": "JUPYTERHUB_SERVICE_URL", "value": "http://0.0.0.0:8888/user/alice/"}],
    })  # fmt: skip
    assert cfg["env"]["JUPYTERHUB_SERVICE_URL"] == "http://127.0.90.7:8888/user/alice/"
    assert cfg["argv"][-1] == "--ip=127.0.90.7"


def test_env_field_refs_and_var_expansion() -> None:
    cfg = config({"image": "busybox", "command": ["echo", "$(POD)"], "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "WHERE", "value": "$(POD)@$(IP) $$(POD)"},
    ]})  # fmt: skip
    assert cfg["env"]["WHERE"] == "jupyter-alice@127.0.90.7 $(POD)"
    assert cfg["argv"] == ["echo", "jupyter-alice"]


def test_run_as_non_root_refuses_uid_0() -> None:
    with pytest.raises(ContainerConfigError, match="runAsNonRoot"):
        config({"image": "busybox", "command": ["id"], "securityContext": {"runAsNonRoot": True}})


def test_capabilities_are_the_default_set_minus_drop_plus_add() -> None:
    drop_all = config({"image": "busybox", "command": ["id"], "securityContext": {
        "capabilities": {"drop": ["ALL"], "add": ["SETUID", "CAP_SETGID", "CHOWN"]}}})  # fmt: skip
    assert drop_all["caps"] == ["CHOWN", "SETGID", "SETUID"]
    default = config({"image": "busybox", "command": ["id"],
                      "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}})  # fmt: skip
    assert "NET_RAW" not in default["caps"] and "KILL" in default["caps"]


def test_groups_include_primary_pod_supplemental_and_fs_group() -> None:
    pod = {**POD, "spec": {"securityContext": {"supplementalGroups": [4000], "fsGroup": 100}}}
    cfg = config({"image": "busybox", "command": ["id"], "securityContext": {"runAsUser": 1234,
                  "runAsGroup": 2345}}, pod)  # fmt: skip
    assert cfg["groups"] == [100, 2345, 4000]


# --- the shim, run directly on a config ---


def run_shim(
    tmp_path: Path, container: Obj, volumes: dict[str, str] | None = None
) -> tuple[int, str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv: the shim makes namespaces and mounts")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "tlog").touch()
    cfg = config(container, volumes=volumes, tmp=tmp_path)
    cfg["parent_pid"] = os.getpid()
    (tmp_path / "config.marshal").write_bytes(marshal.dumps(cfg))
    proc = subprocess.run([sys.executable, *SHIM_FLAGS, shim.__file__, str(tmp_path / "config.marshal")],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_shim_exits_with_the_container_exit_code(tmp_path: Path) -> None:
    code, _ = run_shim(tmp_path, {"image": "busybox", "command": ["sh", "-c", "exit 7"]})
    assert code == 7


def test_shim_gives_the_container_its_own_pid_namespace_and_hostname(tmp_path: Path) -> None:
    # "$$$$" is Kubernetes' escape for the shell's "$$"
    code, out = run_shim(
        tmp_path, {"image": "busybox", "command": ["sh", "-c", "echo $$$$; hostname"]}
    )
    assert (code, out.split()) == (0, ["2", "jupyter-alice"])


def test_shim_hides_directories_that_are_not_bound(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    code, out = run_shim(tmp_path, {"image": "busybox", "command": ["sh", "-c", f"ls {secret}"]})
    assert code != 0 and "No such file or directory" in out


def test_shim_reports_a_missing_executable_as_start_error(tmp_path: Path) -> None:
    code, _out = run_shim(tmp_path, {"image": "busybox", "command": ["no-such-tool"]})
    assert code == runtime.START_ERROR_EXIT
    assert "executable file not found" in (tmp_path / "start-error").read_text()


def test_shim_refuses_a_subpath_swapped_for_a_symlink_after_the_kubelet_resolved_it(
    tmp_path: Path,
) -> None:
    vol = tmp_path / "vol"
    (vol / "elsewhere").mkdir(parents=True)
    # "home" was a directory when the kubelet side resolved it, then became a link.
    (vol / "home").symlink_to(vol / "elsewhere")
    if os.geteuid() != 0:
        pytest.skip("needs root: the shim makes namespaces and mounts")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "tlog").touch()
    cfg = config({"image": "busybox", "command": ["true"]}, tmp=tmp_path)
    cfg["mounts"] = [
        {"volume_dir": str(vol), "sub_path": "home", "target": "/h", "readonly": False}
    ]
    cfg["parent_pid"] = os.getpid()
    (tmp_path / "config.marshal").write_bytes(marshal.dumps(cfg))
    proc = subprocess.run([sys.executable, *SHIM_FLAGS, shim.__file__, str(tmp_path / "config.marshal")],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == runtime.START_ERROR_EXIT
    assert "unexpected symlink found" in (tmp_path / "start-error").read_text()
