"""The benchmarks still run and print their ratios (what they measure is not asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_pod_manifest_benchmark_compares_against_kubespawner() -> None:
    out = run("bench_pod_manifest.py")

    assert "KubeSpawner" in out and " 1.00x" in out
    assert "NFSUIDSpawner initcontainer" in out


def test_spawn_benchmark_compares_against_kubespawner() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the sandbox kubelet runs pods as real uids")
    out = run("bench_spawn.py")

    assert [line.split()[0] for line in out.splitlines()[2:]] == [
        "KubeSpawner",
        "NFSUIDSpawner",
        "NFSUIDSpawner",
    ]
