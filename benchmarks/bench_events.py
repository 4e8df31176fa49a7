"""How much reading a pod's events costs with nfsuidspawner, against plain KubeSpawner in the same run.

    .venv/bin/python benchmarks/bench_events.py [--pods 500] [--rounds 300]

KubeSpawner reads the events of a spawn's pod (its `events` property) twice a start and once a
second for each spawn page that is open, from the event reflector that holds every event of the
namespace. The reflector here holds `pods` pods' events, eight each as a lab pod with the
identity initContainer brings, at shuffled times. For each spawner it reads one pod's events
`rounds` times and prints the median time per read, then the ratio to KubeSpawner.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from kubespawner import KubeSpawner

sys.path.insert(0, str(Path(__file__).parent.parent))
from nfsuidspawner import NFSUIDSpawner
from tests.start_stand_ins import Events  # KubeSpawner's event reflector, as the tests hold it

EVENTS_A_POD = 8  # Scheduled; Pulled, Created, Started for the initContainer and the lab


def namespace_events(pods: int) -> Events:
    rng = random.Random(0)
    reflector = Events()
    for n in range(pods * EVENTS_A_POD):
        pod = f"jupyter-u{n // EVENTS_A_POD:04d}"
        reflector.add(
            {
                "metadata": {"name": f"{pod}.{n}", "namespace": "jupyter", "uid": f"event-{n}"},
                "involvedObject": {"name": pod, "namespace": "jupyter"},
                "lastTimestamp": f"2026-11-29T09:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
                "eventTime": None,
            }
        )
    return reflector


def median_read(spawner_class: type, page: SimpleNamespace, rounds: int) -> float:
    read = spawner_class.events.fget
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        read(page)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(pods: int, rounds: int) -> None:
    page = SimpleNamespace(
        event_reflector=namespace_events(pods),
        namespace="jupyter",
        pod_name=f"jupyter-u{pods // 2:04d}",
        _last_event=None,
    )
    base = median_read(KubeSpawner, page, rounds)
    ours = median_read(NFSUIDSpawner, page, rounds)
    print(f"a pod's events among {pods * EVENTS_A_POD}, median of {rounds} reads")
    print(f"{'spawner':16} {'time':>10} {'ratio':>7}")
    for name, took in (("KubeSpawner", base), ("NFSUIDSpawner", ours)):
        print(f"{name:16} {took * 1e6:8.0f}us {took / base:6.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    main(args.pods, args.rounds)
