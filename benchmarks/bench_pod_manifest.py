"""How much building a pod costs with nfsuidspawner, against plain KubeSpawner in the same run.

    .venv/bin/python benchmarks/bench_pod_manifest.py [--rounds 300]

For each spawner it builds the same user's pod manifest `rounds` times and prints the
median time per build and the median peak of memory allocated during one build
(tracemalloc), then the ratios to KubeSpawner. The "hub" row stats a real directory
(it needs root to chown it; it is left out otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner, clients
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).parent.parent))
from nfsuidspawner import NFSUIDSpawner
from tests.conftest import FakeOrmSpawner, FakeUser

KUBECONFIG = """apiVersion: v1
kind: Config
current-context: bench
clusters: [{name: bench, cluster: {server: 'http://127.0.0.1:9'}}]
users: [{name: bench, user: {token: unused}}]
contexts: [{name: bench, context: {cluster: bench, user: bench, namespace: default}}]
"""


async def measure(spawner_class: type, config: Config, rounds: int) -> tuple[float, float]:
    spawner = spawner_class(
        _mock=True, config=config, user=FakeUser("qiang.guo03"), orm_spawner=FakeOrmSpawner("")
    )
    await spawner.get_pod_manifest()  # warm up imports and caches
    times, peaks = [], []
    for _ in range(rounds):  # timed without tracemalloc, which slows allocation
        start = time.perf_counter()
        await spawner.get_pod_manifest()
        times.append(time.perf_counter() - start)
    for _ in range(rounds):
        tracemalloc.start()
        await spawner.get_pod_manifest()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), statistics.median(peaks)


async def main(rounds: int) -> None:
    common = {"cmd": ["start-singleuser.py"], "image": "quay.io/jupyter/base-notebook:2025-12-31"}
    cases: dict[str, tuple[type, dict]] = {
        "KubeSpawner": (KubeSpawner, {}),
        "NFSUIDSpawner initcontainer": (NFSUIDSpawner, {"identity_source": "initcontainer"}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if os.geteuid() == 0:
            home = Path(tmp, "share", "home", "qiang.guo03")
            home.mkdir(parents=True)
            os.chown(home, 2003, 3003)
            cases["NFSUIDSpawner hub"] = (
                NFSUIDSpawner,
                {"identity_source": "hub", "hub_share_path": str(home.parent.parent)},
            )
        else:
            print("(not root: the hub row, which chowns a directory, is left out)")
        path = Path(tmp, "kubeconfig")
        path.write_text(KUBECONFIG)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
        clients.load_config.cache_clear()

        results = {}
        for name, (cls, settings) in cases.items():
            config = Config({"KubeSpawner": common, "NFSUIDSpawner": settings})
            results[name] = await measure(cls, config, rounds)
        await clients.shared_client("CoreV1Api").api_client.close()

    base_time, base_peak = results["KubeSpawner"]
    print(f"get_pod_manifest, median of {rounds} builds, Python {sys.version.split()[0]}")
    print(f"{'spawner':30} {'time':>10} {'ratio':>7} {'peak alloc':>12} {'ratio':>7}")
    for name, (median_time, peak) in results.items():
        print(
            f"{name:30} {median_time * 1e6:8.0f}us {median_time / base_time:6.2f}x"
            f" {peak / 1024:9.1f}KiB {peak / base_peak:6.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(parser.parse_args().rounds))
