"""The sandbox kubelet against the sandbox API server: real processes, uids, mounts (needs root)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from nfsuidspawner.sandbox.apiserver import ApiServer
from nfsuidspawner.sandbox.kubelet import Kubelet, KubeletError

from .pods import (
    BUSYBOX,
    NS,
    TOKEN,
    Cluster,
    Obj,
    mounts_under,
    needs_root,
    nfs_volume,
    processes_with,
    sh,
    user,
)

pytestmark = pytest.mark.sandbox


# --- identity and files ---


async def test_container_runs_as_run_as_user_and_group(cluster: Cluster) -> None:
    await cluster.create("ids", [sh("id", securityContext=user(1234, 2345))],
                         securityContext={"supplementalGroups": [4000]})  # fmt: skip
    pod = await cluster.finished("ids")
    assert pod["status"]["phase"] == "Succeeded"
    assert cluster.log("ids").strip() == "uid=1234 gid=2345 groups=2345,4000"


async def test_file_created_on_nfs_volume_is_owned_by_run_as_user(cluster: Cluster) -> None:
    (cluster.export / "home").mkdir(mode=0o777)
    os.chmod(cluster.export / "home", 0o777)
    await cluster.create(
        "owner",
        [
            sh(
                "touch /share/home/made-here",
                securityContext=user(1234, 2345),
                volumeMounts=[{"name": "share", "mountPath": "/share"}],
            )
        ],
        volumes=[nfs_volume()],
    )
    assert (await cluster.finished("owner"))["status"]["phase"] == "Succeeded"
    st = (cluster.export / "home" / "made-here").stat()
    assert (st.st_uid, st.st_gid) == (1234, 2345)


async def test_subpath_mounts_only_that_directory(cluster: Cluster) -> None:
    for d in ("alice", "bob"):
        (cluster.export / "home" / d).mkdir(parents=True)
    (cluster.export / "home" / "alice" / "mine").touch()
    await cluster.create(
        "subpath",
        [
            sh(
                "ls -A /data; ls -A /data/..; ls /export 2>&1 || echo no-export",
                volumeMounts=[
                    {"name": "share", "mountPath": "/data/alice", "subPath": "home/alice"}
                ],
            )
        ],
        volumes=[nfs_volume()],
    )
    await cluster.finished("subpath")
    lines = cluster.log("subpath").split()
    assert lines[0] == "alice" and "bob" not in lines and "no-export" in lines


async def test_nfs_volume_may_name_a_subdirectory_of_an_export(cluster: Cluster) -> None:
    (cluster.export / "projects").mkdir()
    (cluster.export / "projects" / "p1").touch()
    await cluster.create("subexport", [sh("ls /p", volumeMounts=[{"name": "share", "mountPath": "/p"}])],
                         volumes=[nfs_volume("/export/projects")])  # fmt: skip
    await cluster.finished("subexport")
    assert cluster.log("subexport").split() == ["p1"]


async def test_a_volume_whose_api_lookup_failed_is_mounted_on_a_retry(cluster: Cluster) -> None:
    """As a kubelet's volume manager does: FailedMount, then a retry. (The API client tries a
    502-504 or a lost connection again itself; a 500 reaches the volume manager.)"""
    (cluster.export / "hpc").mkdir()
    (cluster.export / "hpc" / "here").touch()
    nfs = {"server": "nfs.example", "path": "/export/hpc"}
    claim = {"namespace": NS, "name": "hpc"}  # bound by the PV's claimRef: the kubelet lists PVs
    await cluster.call("POST", "/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "hpc"},
        "spec": {"capacity": {"storage": "1Ti"}, "accessModes": ["ReadWriteMany"], "nfs": nfs,
                 "claimRef": claim},
    })  # fmt: skip
    await cluster.call("POST", f"/api/v1/namespaces/{NS}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "hpc"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Ti"}}},
    })  # fmt: skip
    rule = {"verb": "list", "resource": "persistentvolumes", "identity": "admin", "count": 1}
    await cluster.call("POST", "/sandbox/faults", {"rules": [rule | {"action": "error"}]})
    volume = {"name": "share", "persistentVolumeClaim": {"claimName": "hpc"}}
    mount = {"name": "share", "mountPath": "/p"}
    await cluster.create("retried", [sh("ls /p", volumeMounts=[mount])], volumes=[volume])
    pod = await cluster.finished("retried")
    assert pod["status"]["phase"] == "Succeeded", await cluster.explain("retried")
    assert cluster.log("retried").split() == ["here"]
    assert "FailedMount" in [e["reason"] for e in await cluster.events("retried")]


async def test_read_only_mount_is_read_only(cluster: Cluster) -> None:
    await cluster.create(
        "ro",
        [
            sh(
                "touch /share/x 2>&1; echo rc=$?",
                volumeMounts=[{"name": "share", "mountPath": "/share", "readOnly": True}],
            )
        ],
        volumes=[nfs_volume()],
    )
    await cluster.finished("ro")
    assert "Read-only file system" in cluster.log("ro") and not (cluster.export / "x").exists()


async def test_emptydir_is_world_writable_and_shared_between_containers(cluster: Cluster) -> None:
    vm = [{"name": "scratch", "mountPath": "/scratch"}]
    await cluster.create(
        "empty",
        [sh("cat /scratch/note; stat -c %a /scratch", volumeMounts=vm)],
        init=[
            sh(
                "echo from-init > /scratch/note",
                name="i",
                securityContext=user(1234),
                volumeMounts=vm,
            )
        ],
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    await cluster.finished("empty")
    assert cluster.log("empty").split() == ["from-init", "777"]


# --- init containers and termination messages ---


async def test_init_containers_run_in_order_before_the_main_container(cluster: Cluster) -> None:
    vm = [{"name": "scratch", "mountPath": "/s"}]
    await cluster.create(
        "order", [sh("cat /s/order", volumeMounts=vm)],
        init=[sh("echo one >> /s/order", name="i1", volumeMounts=vm),
              sh("echo two >> /s/order", name="i2", volumeMounts=vm)],
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )  # fmt: skip
    pod = await cluster.finished("order")
    assert cluster.log("order").split() == ["one", "two"]
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] == [
        "Completed", "Completed"]  # fmt: skip


def init_states(statuses: list[Obj]) -> list[Obj]:
    return [s["initContainerStatuses"][0]["state"] for s in statuses]


async def test_an_init_container_that_ends_between_relists_is_only_reported_ended(
    cluster: Cluster,
) -> None:
    """A kubelet sees containers run at its relist (the generic PLEG, each second). In the sync
    that sees an init container's end it reports it, with the pod Initialized and the lab still
    waiting in PodInitializing, then starts the lab: one status, not three."""
    cluster.kubelet.relist_period = 10  # the init container surely ends within it
    created = await cluster.create("quick", [sh("exit 0")], init=[sh("true", name="i")])

    statuses = await cluster.statuses(created, lambda p: p["status"]["phase"] == "Succeeded")

    assert not [s for s in init_states(statuses) if "running" in s]
    ended = next(s for s in statuses if "terminated" in s["initContainerStatuses"][0]["state"])
    assert {c["type"]: c["status"] for c in ended["conditions"]}["Initialized"] == "True"
    waits = [s["containerStatuses"][0]["state"].get("waiting") for s in statuses]
    assert {"reason": "ContainerCreating"} not in waits
    assert ended["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


async def test_an_init_container_still_running_at_a_relist_is_reported_running(
    cluster: Cluster,
) -> None:
    cluster.kubelet.relist_period = 0.2
    created = await cluster.create("slow", [sh("exit 0")], init=[sh("sleep 30", name="i")])

    def init_runs(pod: Obj) -> bool:
        return "running" in (pod["status"].get("initContainerStatuses") or [{}])[0].get("state", {})

    statuses = await cluster.statuses(created, init_runs)  # fails if it is never reported

    assert init_states(statuses)[-1]["running"]["startedAt"]
    await cluster.delete("slow", grace=0)


async def test_failed_init_container_reports_its_termination_message(cluster: Cluster) -> None:
    await cluster.create(
        "initfail", [sh("echo main ran")],
        init=[sh("echo 'no such directory' > /dev/termination-log; exit 1", name="nfsuid-identity",
                 securityContext=user(65534, 65534, readOnlyRootFilesystem=True))],
    )  # fmt: skip
    pod = await cluster.finished("initfail")
    assert pod["status"]["phase"] == "Failed"
    term = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (
        1,
        "Error",
        "no such directory\n",
    )
    assert "running" not in pod["status"]["containerStatuses"][0]["state"]
    assert cluster.log("initfail") == ""


async def test_fallback_to_logs_on_error_uses_the_log_tail(cluster: Cluster) -> None:
    await cluster.create(
        "fallback",
        [
            sh(
                "echo first; echo last words; exit 3",
                terminationMessagePolicy="FallbackToLogsOnError",
            )
        ],
    )
    pod = await cluster.finished("fallback")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["message"] == "first\nlast words"


async def test_restart_on_failure_counts_restarts_with_back_off(cluster: Cluster) -> None:
    vm = [{"name": "scratch", "mountPath": "/s"}]
    await cluster.create(
        "restart", [sh("echo x >> /s/runs; [ $(wc -l < /s/runs) -ge 3 ]", volumeMounts=vm)],
        volumes=[{"name": "scratch", "emptyDir": {}}], restart="OnFailure",
    )  # fmt: skip
    pod = await cluster.finished("restart")
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded" and status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert "BackOff" in [e["reason"] for e in await cluster.events("restart")]


# --- security context ---


async def test_non_root_container_has_no_capabilities(cluster: Cluster) -> None:
    await cluster.create(
        "capuser",
        [
            sh(
                "grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status",
                securityContext=user(1234) | {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}},
            )
        ],
    )
    await cluster.finished("capuser")
    assert all(line.endswith("0000000000000000") for line in cluster.log("capuser").splitlines())


async def test_root_container_has_exactly_the_added_capabilities(cluster: Cluster) -> None:
    sc = {"runAsUser": 0, "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID", "CHOWN"]}}
    await cluster.create(
        "caproot", [sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status", securityContext=sc)]
    )
    await cluster.finished("caproot")
    # CHOWN=0, SETGID=6, SETUID=7
    assert cluster.log("caproot").split() == [
        "CapEff:",
        "00000000000000c1",
        "CapBnd:",
        "00000000000000c1",
    ]


async def test_no_new_privs_is_set_when_privilege_escalation_is_disallowed(
    cluster: Cluster,
) -> None:
    await cluster.create(
        "nnp", [sh("grep NoNewPrivs /proc/self/status", securityContext=user(1234))]
    )
    await cluster.finished("nnp")
    assert cluster.log("nnp").split() == ["NoNewPrivs:", "1"]


async def test_read_only_root_filesystem_is_enforced(cluster: Cluster) -> None:
    await cluster.create(
        "rofs",
        [sh("touch /tmp/x 2>&1; echo rc=$?", securityContext=user(0, readOnlyRootFilesystem=True))],
    )
    await cluster.finished("rofs")
    assert "Read-only file system" in cluster.log("rofs")


async def test_run_as_non_root_refuses_a_root_container(cluster: Cluster) -> None:
    await cluster.create("nonroot", [sh("id", securityContext={"runAsNonRoot": True})])
    pod = await cluster.wait("nonroot", lambda p: "waiting" in (
        (p["status"].get("containerStatuses") or [{}])[0].get("state") or {})
        and p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        == "CreateContainerConfigError")  # fmt: skip
    assert "runAsNonRoot" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]


async def test_host_filesystem_outside_the_binds_is_invisible(cluster: Cluster) -> None:
    await cluster.create("hidden", [sh(f"ls -A /root; ls {cluster.export} 2>&1; ls /work")])
    await cluster.finished("hidden")
    out = cluster.log("hidden")
    assert "No such file or directory" in out and ".pyenv" in out


# --- networking, readiness, status, deletion ---


async def test_pod_is_ready_once_its_port_accepts_on_the_pod_ip(cluster: Cluster) -> None:
    server = ("import os,socket,time,urllib.parse as u;"
              "h=u.urlsplit(os.environ['JUPYTERHUB_SERVICE_URL']);time.sleep(0.5);"
              "s=socket.socket();s.bind((h.hostname,h.port));s.listen();time.sleep(60)")  # fmt: skip
    await cluster.create("ready", [{
        "name": "c", "image": BUSYBOX, "command": [os.path.join(os.sys.prefix, "bin/python"), "-c", server],
        "env": [{"name": "JUPYTERHUB_SERVICE_URL", "value": "http://0.0.0.0:8888/user/a/"}],
        "ports": [{"containerPort": 8888, "name": "notebook-port"}],
    }])  # fmt: skip
    running = await cluster.wait("ready", lambda p: p["status"].get("phase") == "Running")
    assert running["status"]["containerStatuses"][0]["ready"] is False
    pod = await cluster.wait("ready", lambda p: p["status"]["containerStatuses"][0]["ready"])
    status = pod["status"]
    assert status["podIP"].startswith("127.0.91.") and status["podIPs"] == [{"ip": status["podIP"]}]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    _, writer = await asyncio.open_connection(status["podIP"], 8888)
    writer.close()


async def test_pod_ip_skips_an_address_whose_port_another_process_holds(cluster: Cluster) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.91.2", 7777))
        squatter.listen()
        await cluster.create(
            "moved", [{**sh("sleep 30"), "ports": [{"containerPort": 7777, "name": "web"}]}]
        )
        pod = await cluster.wait("moved", lambda p: p["status"].get("podIP"))

    assert pod["status"]["podIP"] == "127.0.91.3"


async def test_status_and_events_look_like_a_kubelets(cluster: Cluster) -> None:
    await cluster.create("shape", [sh("exit 0")])
    pod = await cluster.finished("shape")
    status = pod["status"]
    cs = status["containerStatuses"][0]
    assert {"hostIP", "podIP", "startTime", "conditions"} <= status.keys()
    assert cs["containerID"].startswith("sandbox://") and cs["imageID"]
    assert {"startedAt", "finishedAt", "exitCode", "reason"} <= cs["state"]["terminated"].keys()
    reasons = [e["reason"] for e in await cluster.events("shape")]
    assert reasons[:1] == ["Scheduled"] and {"Pulled", "Created", "Started"} <= set(reasons)
    assert all(
        "lastTimestamp" in e and e["source"]["component"] for e in await cluster.events("shape")
    )


async def test_deleting_a_pod_kills_its_processes_and_removes_it(cluster: Cluster) -> None:
    marker = "sleep 4242.5"
    await cluster.create("victim", [sh(f"trap 'exit 0' TERM; {marker} & wait")])
    await cluster.wait("victim", lambda p: p["status"].get("phase") == "Running")
    for _ in range(100):
        if processes_with(marker):
            break
        await asyncio.sleep(0.02)
    assert processes_with(marker)
    await cluster.call("DELETE", f"/api/v1/namespaces/{NS}/pods/victim", gracePeriodSeconds="5")
    deadline = time.monotonic() + 10
    while await cluster.get("victim") is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await cluster.get("victim") is None
    assert not processes_with(marker)
    assert "Killing" in [e["reason"] for e in await cluster.events("victim")]


async def test_stopping_the_kubelet_leaves_no_process_and_no_mount(tmp_path: Path) -> None:
    needs_root()
    marker = "sleep 4343.5"
    server = ApiServer(tokens={TOKEN: "admin"}, namespaces=[NS])
    await server.start()
    kubelet = Kubelet(server.url, TOKEN, tmp_path / "state", {}, "127.0.92.0/24")
    await kubelet.start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        c = Cluster(server, kubelet, tmp_path, session)
        await c.create("longrun", [sh(marker)])
        await c.wait("longrun", lambda p: p["status"].get("phase") == "Running")
        await asyncio.sleep(0.2)
        assert processes_with(marker)
        await kubelet.stop()
    await server.stop()
    assert not processes_with(marker)
    assert mounts_under(tmp_path) == []
    assert not any((tmp_path / "state" / "pods").iterdir())


async def test_kubelet_refuses_to_start_as_non_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    kubelet = Kubelet("http://127.0.0.1:1", TOKEN, tmp_path, {})
    with pytest.raises(KubeletError, match="cannot enforce runAsUser"):
        await kubelet.start()
