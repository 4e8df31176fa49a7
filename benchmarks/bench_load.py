"""A burst of concurrent logins through a real JupyterHub: nfsuidspawner against plain KubeSpawner.

    sudo .venv/bin/python benchmarks/bench_load.py [--users 50] [--deadline 1200]

For each setup (plain KubeSpawner, then NFSUIDSpawner with the initcontainer and the hub
identity source) it starts a fresh sandbox cluster as a child process (its CPU is its own) and a
real hub with configurable-http-proxy (HubProcess). N users, each with a directory on the
sandbox's share (uid and gid 10000+i), are started at once through the REST API with an admin
service token (POST /hub/api/users/NAME/server), then stopped at once (DELETE).

The hub runs with `concurrent_spawn_limit` and `active_server_limit` 0, `start_timeout` 600 s and
`http_timeout` 300 s (flags change them), and KubeSpawner's own API timeouts (3 s a request,
30 s of retries) unless --api-timeout / --api-retry-timeout say otherwise. The lab is a tiny HTTP
server answering 200, started through the image's start.sh (the sandbox's docker-stacks
stand-in), so the initcontainer source's switch from root to the user is real, and what differs
between setups is what the spawners add.

Polling 500 users through the REST API would cost the hub more CPU than the spawners being
compared, so the hub's `slow_spawn_timeout` and `slow_stop_timeout` are raised past the
spawner's timeouts: each POST answers when its server is ready (201) or failed (an error with
the hub's message), each DELETE when its server is gone. A 202 (still pending) is polled. One
listing of the hub's servers confirms the outcome at the end of each phase.

Per setup: total time, p50/p99 time to ready, failures and their first messages, hub CPU ms per
spawn (/proc/<hub>/stat utime+stime over the burst, children excluded) and the part of it spent
collecting garbage (a probe loaded into the hub, load_hub.GC_PROBE), the hub's peak RSS
(VmHWM), the sandbox's CPU and API writes per spawn (each reaches the hub's watches), the CPU of
every container process per spawn, start to stop (the sandbox's cutime+cstime), the time for
all to stop, and what is left once the hub has no server: pods (from the API), the
sandbox's container processes, mounts under the run's directory, servers in the hub. Then the
ratios to KubeSpawner, and one machine-readable line per setup (leftover -1: not counted, the
setup did not get that far):

    RESULT setup=<name> users=N failed=F leftover=L total_ratio=X hub_cpu_ratio=Y

The whole run ends by --deadline (spawns not ready by then fail; stopping and counting get
3 more minutes). Whatever happens, Ctrl-C and SIGTERM included, the hub, the sandbox and the
temporary directories go. Exits 1 if any spawn failed or anything was left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from load_hub import GC_PROBE, HubApi, hub_gc
from load_machine import (
    NAMESPACE,
    NFS_PATH,
    NFS_SERVER,
    REPO,
    SandboxProcess,
    cpu_seconds,
    descendants,
    load_average,
    mounts_under,
    peak_rss_mib,
    remove_tree,
)
from load_report import Outcome, Result, report, report_setup

sys.path.insert(0, str(REPO))
from nfsuidspawner.sandbox.hub import HubProcess, HubSettings, free_port, tiny_lab_command

SETUPS = ("KubeSpawner", "initcontainer", "hub")
FIRST_UID = 10000
# Time allowed past --deadline to stop the servers, count what is left and clean up.
CLEANUP_BUDGET = 180.0

# --- one setup ----------------------------------------------------------------------------


def hub_config(args: argparse.Namespace, setup: str, gc_file: Path) -> str:
    """The extra config file for a setup (loaded after the sandbox's jupyterhub_config.py)."""
    slow = {
        "slow_spawn_timeout": args.start_timeout + args.http_timeout + 60,
        "slow_stop_timeout": args.start_timeout + 60,
    }
    lines = [
        "c.JupyterHub.concurrent_spawn_limit = 0",
        "c.JupyterHub.active_server_limit = 0",
        # Each POST and DELETE answers when its spawn or stop ends (no polling of the hub).
        f"c.JupyterHub.tornado_settings = {slow!r}",
        f"c.KubeSpawner.start_timeout = {args.start_timeout}",
        f"c.KubeSpawner.http_timeout = {args.http_timeout}",
        f"c.KubeSpawner.cmd = {tiny_lab_command()!r}",
        GC_PROBE,
        f"_bench_gc_probe({str(gc_file)!r})",
    ]
    if args.api_timeout is not None:
        lines.append(f"c.KubeSpawner.k8s_api_request_timeout = {args.api_timeout}")
    if args.api_retry_timeout is not None:
        lines.append(f"c.KubeSpawner.k8s_api_request_retry_timeout = {args.api_retry_timeout}")
    if setup == "KubeSpawner":
        lines.append('c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"')
    return "\n".join(lines) + "\n"


def spawner_settings(setup: str, export: Path) -> dict[str, Any]:
    if setup == "KubeSpawner":
        return {}
    nfs = {"nfs_storage": "inline", "nfs_server": NFS_SERVER, "nfs_export_path": NFS_PATH}
    if setup == "hub":
        return nfs | {"identity_source": "hub", "hub_share_path": str(export)}
    return nfs | {"identity_source": "initcontainer"}


def make_share(export: Path, users: list[str]) -> None:
    """A 0700 home per user, owned by uid and gid 10000+i, as on the NFS share."""
    for i, user in enumerate(users):
        home = export / "home" / user
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, FIRST_UID + i, FIRST_UID + i)


async def within(deadline: float, coro: Any) -> Any:
    """Await `coro` until the monotonic `deadline` (TimeoutError after it)."""
    return await asyncio.wait_for(coro, max(deadline - time.monotonic(), 0.01))


async def burst(api: HubApi, users: list[str], deadline: float) -> dict[str, Outcome]:
    tasks = {user: asyncio.create_task(api.start(user)) for user in users}
    try:
        await asyncio.wait(tasks.values(), timeout=max(deadline - time.monotonic(), 0.01))
    finally:  # the deadline, or Ctrl-C
        late = [task for task in tasks.values() if not task.done()]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    outcomes = {}
    for user, task in tasks.items():
        if task.cancelled():
            outcomes[user] = Outcome(error="not ready by the benchmark's --deadline")
        elif task.exception() is not None:
            outcomes[user] = Outcome(error=f"benchmark client: {task.exception()!r}")
        else:
            outcomes[user] = task.result()
    return outcomes


async def count_leftovers(
    sandbox: SandboxProcess, api: HubApi, root: Path, deadline: float
) -> dict[str, int]:
    """What is left once every server is stopped: waits until nothing, or the deadline."""
    while True:
        left = {
            "pods": len(await sandbox.pods()),
            "processes": len(descendants(sandbox.pid)),
            "mounts": len(mounts_under(root)),
            "servers": len(await api.servers("active")),
        }
        if not any(left.values()):
            # Once more a little later: a pod from a late create would show up now.
            await asyncio.sleep(2)
            again = {"pods": len(await sandbox.pods()), "processes": len(descendants(sandbox.pid))}
            if not any(again.values()):
                return left
            left |= again
        if time.monotonic() > deadline:
            return left
        await asyncio.sleep(1)


def loop_stalls(log: str) -> str:
    stalls = [
        float(s)
        for s in re.findall(r"Event loop was unresponsive for (?:at least )?([\d.]+)s", log)
    ]
    return f"{len(stalls)}, longest {max(stalls):.1f}s" if stalls else "0"


async def measure(
    setup: str, args: argparse.Namespace, root: Path, deadline: float, result: Result
) -> None:
    users = [f"u{i:04d}" for i in range(args.users)]
    export = root / "exports" / "hpc"
    make_share(export, users)
    sandbox = SandboxProcess(root / "cluster", export)
    hub: HubProcess | None = None
    api: HubApi | None = None
    try:
        await sandbox.start()
        extra = root / "bench_config.py"
        gc_file = root / "hub-gc"
        extra.write_text(hub_config(args, setup, gc_file))
        settings = HubSettings(
            state_dir=str(root / "hub"),
            kubeconfig=sandbox.info["kubeconfig"],
            namespace=NAMESPACE,
            users=[*users, "admin"],
            port=free_port(),
            spawner=spawner_settings(setup, export),
            extra_config=[str(extra)],
        )
        hub = HubProcess(settings)
        hub.launch()  # from the main thread, which outlives the hub
        await asyncio.to_thread(hub.wait_healthy, 120)
        api = HubApi(settings)
        hub_pid = hub.process.pid

        # The burst: every user at once.
        result.load = load_average()
        writes0 = await sandbox.writes()
        (gc0, full0), cpu0 = hub_gc(gc_file), cpu_seconds(hub_pid)
        sandbox_cpu0, t0 = cpu_seconds(sandbox.pid), time.monotonic()
        containers_cpu0 = cpu_seconds(sandbox.pid, children=True)
        outcomes = await burst(api, users, deadline)
        result.total_s = time.monotonic() - t0
        result.hub_cpu_ms = (cpu_seconds(hub_pid) - cpu0) * 1000 / args.users
        await asyncio.sleep(0.3)  # the probe's next write
        gc1, full1 = hub_gc(gc_file)
        result.hub_gc_ms, result.hub_full_gcs = (gc1 - gc0) * 1000 / args.users, full1 - full0
        result.sandbox_cpu_s = cpu_seconds(sandbox.pid) - sandbox_cpu0
        result.api_writes = (await sandbox.writes() - writes0) / args.users
        ready_in_hub = await within(deadline + CLEANUP_BUDGET, api.servers("ready"))
        for user, outcome in outcomes.items():
            if outcome.ready_s is not None and user not in ready_in_hub:
                outcome.ready_s, outcome.error = None, "answered ready, but the hub says not"
            if outcome.ready_s is not None:
                result.ready.append(outcome.ready_s)
            else:
                result.failures[user] = outcome.error

        # Everyone stops at once, the failed ones too (a no-op for the hub).
        cleanup_deadline = max(deadline, time.monotonic()) + CLEANUP_BUDGET
        cpu0, t0 = cpu_seconds(hub_pid), time.monotonic()
        with contextlib.suppress(TimeoutError):
            await within(cleanup_deadline, asyncio.gather(*(api.stop(u) for u in users)))
        result.stop_s = time.monotonic() - t0
        result.hub_stop_cpu_ms = (cpu_seconds(hub_pid) - cpu0) * 1000 / args.users
        result.hub_rss_mib = peak_rss_mib(hub_pid)
        result.left = await count_leftovers(sandbox, api, root, cleanup_deadline)
        if not result.left["processes"]:  # every container has ended, and been counted
            containers_cpu = cpu_seconds(sandbox.pid, children=True) - containers_cpu0
            result.container_cpu_ms = containers_cpu * 1000 / args.users
        result.loop_stalls = loop_stalls(hub.log(tail=10**9))
    finally:
        if api:
            await api.close()
        if hub:
            await asyncio.to_thread(hub.stop)
        await sandbox.stop()
        if args.logs:
            target = Path(args.logs) / setup
            target.mkdir(parents=True, exist_ok=True)
            for log in (root / "sandbox.log", root / "hub" / "jupyterhub.log"):
                if log.exists():
                    shutil.copy(log, target / log.name)


async def run_setup(setup: str, args: argparse.Namespace, deadline: float) -> Result:
    result = Result(setup, args.users)
    if time.monotonic() >= deadline:
        result.error = "not run: the benchmark's --deadline had passed"
        return result
    root = Path(tempfile.mkdtemp(prefix=f"bench-load-{setup}-"))
    root.chmod(0o755)
    try:
        await measure(setup, args, root, deadline, result)
    except Exception as e:  # report it, and go on with the next setup
        traceback.print_exc()
        result.error = f"broke off: {e!r}"[:2000]
    finally:
        remove_tree(root)
    return result


async def main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    deadline = time.monotonic() + args.deadline
    print(
        f"{args.users} concurrent logins per setup through a real hub; start_timeout"
        f" {args.start_timeout}s, http_timeout {args.http_timeout}s, k8s API timeouts"
        f" {args.api_timeout or 'default'}/{args.api_retry_timeout or 'default'};"
        f" {os.cpu_count()} CPUs, {load_average()}",
        flush=True,
    )
    results = []
    for setup in args.setups:
        results.append(await run_setup(setup, args, deadline))
        report_setup(results[-1])
        sys.stdout.flush()
    report(results)
    return 0 if all(r.failed == 0 and r.leftover == 0 for r in results) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--deadline", type=float, default=1200, help="seconds for the whole run")
    parser.add_argument("--start-timeout", type=int, default=600)
    parser.add_argument("--http-timeout", type=int, default=300)
    parser.add_argument("--api-timeout", type=int, help="k8s_api_request_timeout (default 3)")
    parser.add_argument(
        "--api-retry-timeout", type=int, help="k8s_api_request_retry_timeout (default 30)"
    )
    parser.add_argument(
        "--setups",
        type=lambda s: s.split(","),
        default=list(SETUPS),
        help=f"a comma-separated subset of {','.join(SETUPS)}",
    )
    parser.add_argument("--logs", help="copy each setup's hub and sandbox logs into this directory")
    return parser.parse_args()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench_load needs root: the sandbox kubelet runs pods as real uids")
    # Where ./run installs the proxy; the hub finds it on PATH.
    os.environ["PATH"] = f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
    if shutil.which("configurable-http-proxy") is None:
        sys.exit("bench_load needs configurable-http-proxy (./run test installs it)")
    arguments = parse_args()
    if unknown := set(arguments.setups) - set(SETUPS):
        sys.exit(f"unknown setups: {', '.join(sorted(unknown))}")
    try:
        sys.exit(asyncio.run(main(arguments)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("bench_load: interrupted; its hub, sandbox and files are gone")
