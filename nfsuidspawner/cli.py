"""`nfsuidspawner demo` and `nfsuidspawner sandbox`: the local cluster, with or without a hub."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import manifests
from .errors import NFSUIDError
from .identity import Identity

# The demo share's homes, owner uid and gid by user. Each shows the product's behaviour:
# admin has a lab of their own too; carol's directory is owned by root, as a kubelet leaves
# a subPath it had to create, so her lab is refused.
DEMO_USERS = {
    "alice": (2001, 3001),
    "bob": (2002, 3002),
    "admin": (2000, 3000),
    "carol": (0, 0),
}
# alice and bob share the project group p1: /data/hpc/projects/p1, setgid, group-only.
DEMO_PROJECT = ("p1", 5001)
DEMO_PROJECT_MEMBERS = ["alice", "bob"]
DEMO_CONFIG = f"""
c.NFSUIDSpawner.supplemental_groups = lambda spawner: (
    [({DEMO_PROJECT[1]}, {DEMO_PROJECT[0]!r})] if spawner.user.name in {DEMO_PROJECT_MEMBERS!r} else []
)
c.NFSUIDSpawner.extra_share_mounts = [
    {{"subPath": "projects", "mountPath": "/data/hpc/projects", "readOnly": False}}
]
"""
DEMO_SERVER = "aixsky.msxf.local"
DEMO_EXPORT = "/hpc"
NAMESPACE = "jupyter-system"

NOT_ROOT = """\
nfsuidspawner's sandbox must run as root. As another user it cannot enforce what this
project is about:
  - running each lab as the uid/gid that owns the user's directory (setuid/setgid);
  - dropping capabilities and setting no_new_privs as a container runtime does;
  - private mount and PID namespaces, so a lab sees only its own directory;
  - the demo share's directories owned by alice (2001) and bob (2002).
Run it as root (sudo ./run demo)."""


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _make_demo_share(root: Path) -> Path:
    export = root / "exports" / "hpc"
    for name, (uid, gid) in DEMO_USERS.items():
        home = export / "home" / name
        home.mkdir(parents=True)
        if uid == 0:
            home.chmod(0o755)  # as a kubelet makes it: root's, and nothing in it
            continue
        (home / "README.txt").write_text(
            f"This is {name}'s directory on the demo NFS share, owned by uid {uid}.\n"
        )
        for path in (home, home / "README.txt"):
            os.chown(path, uid, gid)
        home.chmod(0o700)
    name, gid = DEMO_PROJECT
    project = export / "projects" / name
    project.mkdir(parents=True)
    os.chown(project, 0, gid)
    project.chmod(0o2770)
    return export


def _demo_pv_pvc() -> list[dict]:
    return [
        manifests.persistent_volume(
            "hpc-pv", DEMO_SERVER, DEMO_EXPORT, ["vers=3"], "1Ti", NAMESPACE, "hpc-shared-pvc"
        ),
        manifests.persistent_volume_claim("hpc-shared-pvc", NAMESPACE, "hpc-pv", "1Ti"),
    ]


def _port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, where the demo's proxy would."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _banner(url: str, root: Path, hub_log: Path) -> str:
    alice, bob, admin = (DEMO_USERS[name][0] for name in ("alice", "bob", "admin"))
    project, gid = DEMO_PROJECT
    return f"""
nfsuidspawner demo is running: {url}

  Log in with password demo as:
    alice, bob  Each lab runs as the owner of the user's directory on the demo share
                ({DEMO_SERVER}:{DEMO_EXPORT}): alice as uid {alice}, bob as uid {bob}.
                It sees /data/hpc/home/<user> (also /home/<user>), not the others'. Both
                are in the project group {project} (gid {gid}), shared in /data/hpc/projects/{project}.
    admin       The admin panel ({url}/hub/admin), and a lab as uid {admin}.
    carol       Refused: her directory is owned by root, and no lab runs as root. The
                spawn page says so, and how to fix it.

  Files: {root}   Hub log: {hub_log}
  Press Ctrl-C to stop; everything is cleaned up.
"""


async def demo(port: int) -> int:
    from .sandbox.cluster import Sandbox
    from .sandbox.hub import HubProcess, HubSettings

    root = Path(tempfile.mkdtemp(prefix="nfsuid-demo-"))
    root.chmod(0o755)
    sandbox = Sandbox(
        root / "cluster",
        {f"{DEMO_SERVER}:{DEMO_EXPORT}": str(_make_demo_share(root))},
        namespace=NAMESPACE,
    )
    hub = None
    try:
        await sandbox.start()
        await sandbox.apply(_demo_pv_pvc())
        config = root / "demo_config.py"
        config.write_text(DEMO_CONFIG)
        settings = HubSettings(
            state_dir=str(root / "hub"),
            kubeconfig=str(sandbox.kubeconfig),
            namespace=NAMESPACE,
            users=list(DEMO_USERS),
            password="demo",
            port=port,
            extra_config=[str(config)],
        )
        hub = HubProcess(settings)
        hub.launch()  # from this thread, which outlives the hub
        try:
            await asyncio.to_thread(hub.wait_healthy)
        except BaseException:
            hub.stop()
            raise
        print(_banner(settings.url, root, hub.log_path), flush=True)
        await _until_signalled()
    finally:
        print("Stopping the hub, the labs and the sandbox...", flush=True)
        if hub:
            await asyncio.to_thread(hub.stop)
        await sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


async def sandbox(args: argparse.Namespace) -> int:
    from .sandbox.cluster import Sandbox, load_manifests

    exports = dict(e.split("=", 1) for e in args.export)
    cidr = {"pod_cidr": args.pod_cidr} if args.pod_cidr else {}
    cluster = Sandbox(
        args.state_dir, exports, namespace=args.namespace, allow_pv=args.allow_pv, **cidr
    )
    await cluster.start(port=args.port)
    try:
        for path in args.apply:
            await cluster.apply(load_manifests(path))
        print(
            json.dumps(
                {
                    "url": cluster.apiserver.url,
                    "kubeconfig": str(cluster.kubeconfig),
                    "admin_token": cluster.admin_token,
                }
            ),
            flush=True,
        )
        await _until_signalled()
    finally:
        await cluster.stop()
    return 0


def audit_command(args: argparse.Namespace) -> int:
    from .offline import load_config, no_cluster

    with no_cluster():
        return asyncio.run(_audit(args, load_config(args.config)))


async def _audit(args: argparse.Namespace, config: Any) -> int:
    from .audit import audit, report, users_in_share
    from .offline import spawner_for

    probe = spawner_for(config, "audit")
    share = args.share or probe.hub_share_path
    if not share:
        print(
            "nfsuidspawner audit: where is the share? Give --share PATH, or set"
            " c.NFSUIDSpawner.hub_share_path in the config",
            file=sys.stderr,
        )
        return 2
    users = list(args.user)
    for path in args.users_file:
        users += [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        if not users:
            users = await users_in_share(probe.home_dir_template, share, probe.identity_timeout)
        progress = sys.stderr if sys.stderr.isatty() else None
        verdicts = await audit(config, users, share, progress)
    except NFSUIDError as e:
        print(e, file=sys.stderr)
        return 2
    return report(verdicts, args.json, probe.supplemental_groups != "none", sys.stdout)


def render_command(args: argparse.Namespace) -> int:
    import yaml

    from .offline import load_config, no_cluster
    from .render import check, explain, objects_for

    identity = None
    if args.identity:
        uid, _, gid = args.identity.partition(":")
        identity = Identity(int(uid), int(gid))
    config = load_config(args.config)
    try:
        with no_cluster():
            objects = asyncio.run(
                objects_for(config, args.user, args.server, args.profile, identity)
            )
    except NFSUIDError as e:
        print(e, file=sys.stderr)
        if not identity:
            print("(--identity UID:GID renders without asking the source)", file=sys.stderr)
        return 1
    rendered = check(objects, args.kubernetes_version)
    print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    print(explain(rendered, args.kubernetes_version, identity))
    return 1 if rendered.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfsuidspawner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser(
        "demo", help="the sandbox cluster and a hub with demo users, until Ctrl-C"
    )
    demo_cmd.add_argument(
        "--port", type=int, default=8000, help="the hub's port on 127.0.0.1 (default 8000)"
    )
    sandbox_cmd = commands.add_parser("sandbox", help="only the sandbox cluster, until signalled")
    sandbox_cmd.add_argument("--state-dir", required=True)
    sandbox_cmd.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="SERVER:/PATH=DIR",
        help="an NFS export and the local directory standing in for it",
    )
    sandbox_cmd.add_argument("--namespace", default=NAMESPACE)
    sandbox_cmd.add_argument(
        "--allow-pv",
        action="store_true",
        help="grant the hub the ClusterRole rule that ensure-pv needs",
    )
    sandbox_cmd.add_argument(
        "--apply",
        action="append",
        default=[],
        metavar="FILE",
        help="create the core/v1 objects of a manifest file",
    )
    sandbox_cmd.add_argument("--port", type=int, default=0)
    sandbox_cmd.add_argument(
        "--pod-cidr", help="the pods' addresses, inside 127.0.0.0/8 (default: the sandbox's /16)"
    )
    audit_cmd = commands.add_parser(
        "audit", help="who each user's lab would run as, or why it would be refused"
    )
    audit_cmd.add_argument("--config", help="the site's jupyterhub_config.py")
    audit_cmd.add_argument("--share", help="the share root here (default: hub_share_path)")
    audit_cmd.add_argument("--user", action="append", default=[], help="a user (repeatable)")
    audit_cmd.add_argument("--users-file", action="append", default=[], help="one user a line")
    audit_cmd.add_argument("--json", action="store_true", help="JSON for scripts")
    render_cmd = commands.add_parser(
        "render", help="the objects the hub would create for a user, as YAML"
    )
    render_cmd.add_argument("user")
    render_cmd.add_argument("--config", help="the site's jupyterhub_config.py")
    render_cmd.add_argument("--profile", help="a profile_list slug")
    render_cmd.add_argument("--server", default="", help="a named server")
    render_cmd.add_argument(
        "--identity", metavar="UID:GID", help="the directory's owner, instead of asking the source"
    )
    render_cmd.add_argument("--kubernetes-version", default="1.37")
    args = parser.parse_args(argv)

    if args.command == "audit":
        return audit_command(args)
    if args.command == "render":
        return render_command(args)
    if os.geteuid() != 0:
        print(NOT_ROOT, file=sys.stderr)
        return 1
    if args.command == "demo":
        if _port_in_use(args.port):
            print(
                f"nfsuidspawner demo: port {args.port} on 127.0.0.1 is already in use;"
                " choose another with ./run demo --port N",
                file=sys.stderr,
            )
            return 1
        return asyncio.run(demo(args.port))
    return asyncio.run(sandbox(args))


if __name__ == "__main__":
    sys.exit(main())
