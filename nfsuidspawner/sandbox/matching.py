"""Label and field selectors, as the sandbox API server's lists and watches apply them.

``labelSelector`` (``a=b,c!=d,e in (f,g),h notin (i),j,!k``) and ``fieldSelector``
(``metadata.name=x,status.phase!=Running``) are parsed into predicates on an object; a
malformed selector is a 400 BadRequest. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .resources import Obj, bad_request
from .validation import LABEL_VALUE

Requirement = Callable[[Obj], bool]


def _split_outside_parens(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SET_REQUIREMENT = re.compile(r"^(\S+)\s+(in|notin)\s+\((.*)\)$")
_KEY = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*$")


def labels(obj: Obj) -> Obj:
    return obj.get("metadata", {}).get("labels") or {}


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` into predicates on an object's labels."""
    requirements: list[Requirement] = []
    for part in _split_outside_parens(text):
        if m := _SET_REQUIREMENT.match(part):
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                requirements.append(lambda o, k=key, vs=values: labels(o).get(k) in vs)
            else:
                requirements.append(lambda o, k=key, vs=values: labels(o).get(k) not in vs)
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = (s.strip() for s in part.partition(op))
                if not _KEY.match(key) or not LABEL_VALUE.fullmatch(value):
                    raise bad_request(f"unable to parse requirement: {part!r}")
                if op == "!=":
                    requirements.append(lambda o, k=key, v=value: labels(o).get(k) != v)
                else:
                    requirements.append(lambda o, k=key, v=value: labels(o).get(k) == v)
                break
        else:
            negate = part.startswith("!")
            key = part[1:].strip() if negate else part
            if not _KEY.match(key):
                raise bad_request(f"unable to parse requirement: {part!r}")
            requirements.append(lambda o, k=key, n=negate: (k in labels(o)) != n)
    return requirements


def field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str) -> list[Requirement]:
    """Parse `metadata.name=x,status.phase!=Running` (any dotted path; = == !=)."""
    requirements: list[Requirement] = []
    for part in _split_outside_parens(text):
        for op in ("!=", "==", "="):
            if op in part:
                path, _, value = (s.strip() for s in part.partition(op))
                if not path:
                    raise bad_request(f"invalid selector: {part!r}")
                if op == "!=":
                    requirements.append(lambda o, p=path, v=value: field_value(o, p) != v)
                else:
                    requirements.append(lambda o, p=path, v=value: field_value(o, p) == v)
                break
        else:
            raise bad_request(f"invalid selector: {part!r}")
    return requirements


def selector(label_selector: str, field_selector: str) -> Requirement:
    """One predicate for both selectors of a list or watch request (an object must match all)."""
    requirements = parse_label_selector(label_selector)
    requirements += parse_field_selector(field_selector)
    return lambda obj: all(r(obj) for r in requirements)
