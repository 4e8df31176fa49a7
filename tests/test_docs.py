"""The documentation builds without warnings and stays true to the spawner's options.

Build it by hand with:
    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nfsuidspawner.identity import REFUSALS
from nfsuidspawner.options import NFSUIDOptions
from nfsuidspawner.spawner import NFSUIDSpawner

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "nfsuidspawner"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
OPTION = re.compile(r"\bNFSUIDSpawner\.([A-Za-z_][A-Za-z0-9_]*)")
# What the traits' help refers to with :attr:`name` (rendered as links in the reference).
HELP_OPTION = re.compile(r":attr:`~?(?:[\w.]+\.)?(\w+)`")
# Prose such as `identity_source = "hub"`.
ASSIGNED_OPTION = re.compile(r"`([a-z_][a-z0-9_]*) = ")
OWN_TRAITS = sorted(NFSUIDOptions.class_own_traits(config=True))


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML build of docs/, with warnings as errors; fails with Sphinx's output."""
    for module in ("sphinx", "myst_parser", "autodoc_traits", "sphinx_book_theme"):
        pytest.importorskip(module, reason=f"needs {module} (the 'docs' extra) to build the docs")
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    if result.returncode != 0:
        pytest.fail(f"sphinx-build failed:\n{result.stdout}\n{result.stderr}")
    return out / "html"


def test_docs_build_with_warnings_as_errors(built_docs: Path) -> None:
    assert (built_docs / "index.html").is_file()


@pytest.mark.parametrize("name", OWN_TRAITS)
def test_reference_documents_own_trait(built_docs: Path, name: str) -> None:
    reference = (built_docs / "reference.html").read_text()
    assert f'id="nfsuidspawner.spawner.NFSUIDSpawner.{name}"' in reference


def test_reference_leaves_out_inherited_kubespawner_traits(built_docs: Path) -> None:
    reference = (built_docs / "reference.html").read_text()
    documented = set(re.findall(r'id="nfsuidspawner\.spawner\.NFSUIDSpawner\.(\w+)"', reference))
    assert documented == set(OWN_TRAITS)


def named_options() -> list[tuple[str, str]]:
    """(where, option) for every NFSUIDSpawner.X in the pages, and every option in the help."""
    found = [
        (page.name, m)
        for page in PAGES
        for pattern in (OPTION, ASSIGNED_OPTION)
        for m in pattern.findall(page.read_text())
    ]
    for name, trait in NFSUIDOptions.class_own_traits(config=True).items():
        for pattern in (OPTION, HELP_OPTION):
            found += [(f"help of {name}", m) for m in pattern.findall(trait.help)]
    return sorted(set(found))


def test_option_scan_finds_options_in_pages_and_help() -> None:
    wheres = {where for where, _ in named_options()}
    assert "troubleshooting.md" in wheres
    assert any(where.startswith("help of ") for where in wheres)


@pytest.mark.parametrize(("where", "option"), named_options())
def test_option_named_in_docs_is_a_trait(where: str, option: str) -> None:
    assert option in NFSUIDSpawner.class_trait_names(config=True), f"{where} names {option}"


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_troubleshooting_lists_refusal(reason: str) -> None:
    problem, _ = REFUSALS[reason]
    pattern = re.sub(r"\\\{\w+\\\}", r"\\S+", re.escape(problem))
    text = " ".join((DOCS / "troubleshooting.md").read_text().split())
    assert re.search(pattern, text), f"troubleshooting.md does not explain {problem!r}"


def message_pieces(node: ast.expr) -> list[str]:
    """The literal text of a message expression, in order, with the fields left out."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [piece for value in node.values for piece in message_pieces(value)]
    if isinstance(node, ast.BinOp):
        return message_pieces(node.left) + message_pieces(node.right)
    return []


def error_messages() -> list[tuple[str, str]]:
    """(where, phrase): the first phrase of at least three words of every error the spawner
    raises (NFSUIDError, ValueError) outside the sandbox and the CLI. Messages made only of
    fields (the refusal template) have none; their words are checked from REFUSALS."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("NFSUIDError", "ValueError")
                and node.args
            ):
                continue
            for piece in message_pieces(node.args[0]):
                problem = piece.split("Fix:")[0]
                phrases = [" ".join(p.split()) for p in re.split(r"[,;:.()]", problem)]
                phrase = next((p for p in phrases if len(p.split()) >= 3), None)
                if phrase:
                    found.append((f"{path.name}:{node.lineno}", phrase))
                if phrase or "Fix:" in piece:
                    break
    return found


def test_error_message_scan_finds_messages() -> None:
    assert len(error_messages()) >= 10


@pytest.mark.parametrize(
    ("where", "phrase"),
    error_messages(),
    ids=[f"{where.split(':')[0]}-{phrase}" for where, phrase in error_messages()],
)
def test_troubleshooting_explains_error(where: str, phrase: str) -> None:
    text = " ".join((DOCS / "troubleshooting.md").read_text().split())
    assert phrase in text, f"troubleshooting.md does not explain the error at {where}"
