"""Spawn-to-ready time on the sandbox cluster: nfsuidspawner against plain KubeSpawner.

    sudo .venv/bin/python benchmarks/bench_spawn.py [--rounds 7]

Each spawner starts the same user's pod `rounds` times through the sandbox API
server and kubelet (real processes), from `start()` to ready, then stops it. The
lab is a tiny HTTP server, not Jupyter, so that what differs is what the spawners
add: nfsuidspawner's identity initContainer (or the hub's stat) and its volumes.
Medians and the ratios to KubeSpawner, all from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner, clients
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).parent.parent))
from nfsuidspawner import NFSUIDSpawner
from nfsuidspawner.sandbox.cluster import Sandbox
from tests.conftest import FakeOrmSpawner, FakeUser

NAMESPACE = "jupyter-system"
EXPORT = "bench.nfs.local:/hpc"
# A stand-in lab: answers HTTP where the hub expects the server (the kubelet puts the
# pod's IP for 0.0.0.0 in JUPYTERHUB_SERVICE_URL). `command` skips the image's start.sh.
LAB = {
    "command": [
        sys.executable,
        "-c",
        "import os, urllib.parse as u, http.server as h;"
        " url = u.urlparse(os.environ['JUPYTERHUB_SERVICE_URL']);"
        " h.HTTPServer((url.hostname, url.port), h.BaseHTTPRequestHandler).serve_forever()",
    ]
}


async def spawn_times(spawner_class: type, config: Config, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        spawner = spawner_class(
            _mock=True, config=config, user=FakeUser("alice"), orm_spawner=FakeOrmSpawner("")
        )
        start = time.perf_counter()
        await spawner.start()
        times.append(time.perf_counter() - start)
        await spawner.stop(now=True)
    return times


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp, "hpc")
        home = export / "home" / "alice"
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, 2001, 3001)
        Path(tmp).chmod(0o755)
        sandbox = Sandbox(
            Path(tmp, "cluster"),
            {EXPORT: str(export)},
            namespace=NAMESPACE,
            pod_cidr="127.0.92.0/24",
        )
        await sandbox.start()
        try:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(sandbox.kubeconfig)
            clients.load_config.cache_clear()
            common = {
                "namespace": NAMESPACE,
                "image": "quay.io/jupyter/base-notebook:2025-12-31",
                "cmd": ["unused"],
                "extra_container_config": LAB,
                "start_timeout": 60,
                "delete_grace_period": 0,
            }
            nfs = {
                "nfs_storage": "inline",
                "nfs_server": "bench.nfs.local",
                "nfs_export_path": "/hpc",
            }
            cases = {
                "KubeSpawner": (KubeSpawner, {}),
                "NFSUIDSpawner initcontainer": (NFSUIDSpawner, nfs),
                "NFSUIDSpawner hub": (
                    NFSUIDSpawner,
                    nfs | {"identity_source": "hub", "hub_share_path": str(export)},
                ),
            }
            results = {}
            for name, (cls, settings) in cases.items():
                config = Config({"KubeSpawner": common, "NFSUIDSpawner": settings})
                results[name] = statistics.median(await spawn_times(cls, config, rounds))
        finally:
            await KubeSpawner._stop_all_reflectors()
            await clients.shared_client("CoreV1Api").api_client.close()
            await sandbox.stop()

    base = results["KubeSpawner"]
    print(f"start() to ready on the sandbox, median of {rounds} spawns")
    print(f"{'spawner':30} {'time':>9} {'ratio':>7}")
    for name, median in results.items():
        print(f"{name:30} {median:8.2f}s {median / base:6.2f}x")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench_spawn needs root: the sandbox kubelet runs pods as real uids")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    asyncio.run(main(parser.parse_args().rounds))
