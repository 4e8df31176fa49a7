"""The API server's schema validation: kubernetes-validate's verdicts, with schemas loaded once."""

import copy
from typing import Any

import kubernetes_validate
import pytest

from nfsuidspawner.sandbox.validation import schema_validator, validate_schema

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "jupyter-alice", "namespace": "ns", "labels": {"app": "jupyterhub"}},
    "spec": {
        "containers": [
            {
                "name": "notebook",
                "image": "quay.io/jupyter/base-notebook",
                "ports": [{"containerPort": 8888, "name": "notebook-port"}],
                "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "home", "nfs": {"server": "nfs", "path": "/home"}}],
    },
}


def changed(**where: Any) -> dict[str, Any]:
    obj = copy.deepcopy(POD)
    for path, value in where.items():
        *parents, last = path.split("__")
        node = obj
        for step in parents:
            node = node[int(step)] if step.isdigit() else node[step]
        node[last] = value
    return obj


def verdict(validate: Any, obj: dict[str, Any]) -> tuple[Any, ...]:
    try:
        validate(copy.deepcopy(obj))
    except kubernetes_validate.ValidationError as e:
        return (list(e.path), e.message, e.version)
    return ("valid",)


@pytest.mark.parametrize(
    "obj",
    [
        POD,
        changed(spec__bogus=1),
        changed(spec__containers__0__image=5),
        changed(spec__containers__0__ports__0__containerPort="8888"),
        changed(metadata__labels={"app": 1}),
        changed(spec__volumes__0__nfs={"path": "/home"}),
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "count": "1"},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}, "spec": {"x": 1}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}},
    ],
    ids=[
        "valid-pod",
        "unknown-field",
        "wrong-type",
        "string-port",
        "label-type",
        "missing-required",
        "event",
        "namespace-spec",
        "secret",
    ],
)
@pytest.mark.parametrize("version", ["1.37", "v1.30.2"])
def test_validate_schema_agrees_with_kubernetes_validate(obj: dict[str, Any], version: str) -> None:
    library = verdict(lambda o: kubernetes_validate.validate(o, version, strict=True), obj)
    assert verdict(lambda o: validate_schema(o, version), obj) == library


def test_schema_is_built_once_per_kind_and_version() -> None:
    assert schema_validator("Pod", "v1", "1.37") is schema_validator("Pod", "v1", "1.37")
    assert schema_validator("Pod", "v1", "1.37") is not schema_validator("Pod", "v1", "1.30")
    assert schema_validator("Pod", "v1", "1.37")[1] == "1.37"


def test_unsupported_versions_fail_as_in_kubernetes_validate() -> None:
    with pytest.raises(kubernetes_validate.utils.VersionNotSupportedError):
        validate_schema(POD, "1.99")
