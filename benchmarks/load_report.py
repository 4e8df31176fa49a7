"""The load benchmark's results: one setup's measurements, and the report that compares them.

A helper of bench_load.py; see its docstring for what is measured and how.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from load_machine import load_average


@dataclass
class Outcome:
    ready_s: float | None = None  # time to ready, from this user's POST
    error: str = ""


@dataclass
class Result:
    setup: str
    users: int
    total_s: float = math.nan
    ready: list[float] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # user -> first message
    hub_cpu_ms: float = math.nan  # per spawn
    hub_gc_ms: float = math.nan  # per spawn, the part of hub_cpu_ms spent collecting garbage
    hub_full_gcs: int = 0  # during the burst
    hub_stop_cpu_ms: float = math.nan  # per stop
    hub_rss_mib: float = math.nan
    sandbox_cpu_s: float = math.nan
    container_cpu_ms: float = math.nan  # per spawn: every process of the pod, start to stop
    api_writes: float = math.nan  # per spawn
    stop_s: float = math.nan
    left: dict[str, int] = field(default_factory=dict)
    load: str = ""
    loop_stalls: str = ""
    error: str = ""  # why the setup did not run or broke off

    @property
    def failed(self) -> int:
        return self.users - len(self.ready)

    @property
    def leftover(self) -> int:
        return sum(self.left.values()) if self.left else -1


# --- report -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def report_setup(r: Result) -> None:
    print(f"\n== {r.setup}: {r.users} users ({r.load or 'not run'})")
    if r.error:
        print(r.error)
    if math.isnan(r.total_s):
        return
    print(
        f"total {r.total_s:.1f}s, time to ready p50 {percentile(r.ready, 50):.1f}s"
        f" p99 {percentile(r.ready, 99):.1f}s; hub CPU {r.hub_cpu_ms:.0f} ms/spawn"
        f" (GC {r.hub_gc_ms:.1f}, {r.hub_full_gcs} full; {r.hub_stop_cpu_ms:.0f} ms/stop), hub peak RSS {r.hub_rss_mib:.0f} MiB,"
        f" sandbox CPU {r.sandbox_cpu_s:.1f}s, {r.api_writes:.1f} API writes/spawn,"
        f" containers' CPU {r.container_cpu_ms:.0f} ms/spawn;"
        f" all stopped in {r.stop_s:.1f}s;"
        f" hub event loop stalls: {r.loop_stalls}"
    )
    print(f"failed: {r.failed}")
    messages: dict[str, list[str]] = {}
    for user, message in r.failures.items():
        messages.setdefault(message, []).append(user)
    for message, who in sorted(messages.items(), key=lambda item: -len(item[1]))[:5]:
        print(f"  {len(who)}× (first {who[0]}): {message}")
    left = ", ".join(f"{k} {v}" for k, v in r.left.items()) if r.left else "not counted"
    print(f"left: {left}")


def ratio(value: float, base: float) -> float:
    return value / base if base and not math.isnan(base) else math.nan


def report(results: list[Result]) -> None:
    base = next((r for r in results if r.setup == "KubeSpawner"), None)
    base_total = base.total_s if base else math.nan
    base_cpu = base.hub_cpu_ms if base else math.nan
    print(
        "\n| setup | N | total s | p50/p99 s | failed | hub CPU ms/spawn | of it GC | hub peak RSS MiB"
        " | sandbox CPU s | API writes/spawn | containers' CPU ms/spawn | stop s | left | ×time"
        " | ×hub CPU |"
    )
    print("|---" * 15 + "|")
    for r in results:
        print(
            f"| {r.setup} | {r.users} | {r.total_s:.1f}"
            f" | {percentile(r.ready, 50):.1f}/{percentile(r.ready, 99):.1f} | {r.failed}"
            f" | {r.hub_cpu_ms:.0f} | {r.hub_gc_ms:.1f} | {r.hub_rss_mib:.0f} | {r.sandbox_cpu_s:.1f}"
            f" | {r.api_writes:.1f} | {r.container_cpu_ms:.0f} | {r.stop_s:.1f} | {r.leftover} | {ratio(r.total_s, base_total):.2f}"
            f" | {ratio(r.hub_cpu_ms, base_cpu):.2f} |"
        )
    print(f"({load_average()} at the end)")
    for r in results:
        print(
            f"RESULT setup={r.setup} users={r.users} failed={r.failed} leftover={r.leftover}"
            f" total_ratio={ratio(r.total_s, base_total):.2f}"
            f" hub_cpu_ratio={ratio(r.hub_cpu_ms, base_cpu):.2f}"
        )
