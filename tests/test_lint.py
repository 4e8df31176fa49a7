"""The code passes the project's lint rules and formatting (pyproject.toml [tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.fixture
def ruff() -> str:
    if RUFF is None:
        pytest.skip("needs ruff (the 'test' extra)")
    return RUFF


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(ruff: str, command: list[str]) -> None:
    result = subprocess.run([ruff, *command, "."], cwd=REPO, capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr
