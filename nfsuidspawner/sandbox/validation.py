"""What the sandbox API server accepts as an object: strict decoding and schema validation.

A create or update body must name the request's kind (apiVersion v1), namespace and name; a
``generateName`` is filled in; the object must pass kubernetes-validate's *strict* JSON schema of
the server's Kubernetes version (unknown fields are errors, as with a real server's strict field
validation); and the name and labels must have the syntax the real server demands. A failure is
a 400 BadRequest or a 422 Invalid naming the field.

The schemas are loaded once: :func:`kubernetes_validate.validate` reads the kind's schema and the
1.8 MB ``_definitions.json`` from disk and builds a new validator and reference registry on every
call, which cost 23–37 ms of CPU per write under load. :func:`schema_validator` does the same
steps with the library's own helpers, once per (kind, apiVersion, Kubernetes version), and
shares the definitions between kinds; validating is then a walk of the object.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import threading
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from .resources import Obj, Target, bad_request, invalid

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL)
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
GENERATE_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"

# Validation runs in worker threads: one of them builds a validator, the others wait for it.
_build_lock = threading.Lock()


@functools.cache
def _schema_dir(kubernetes_version: str) -> tuple[str, str]:
    """The strict schema directory for a version, and the version validated against.

    As kubernetes_validate.validate picks it: the newest schema not newer than the version.
    """
    desired = kubernetes_version[1:] if kubernetes_version.startswith("v") else kubernetes_version
    if kv.major_minor(desired) > kv.latest_version():
        raise kv.VersionNotSupportedError(version=kv.major_minor(desired))
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(desired)][-1]
    return f"v{version}-local-strict", kv.major_minor(version)


@functools.cache
def _definitions(schema_dir: str, kubernetes_version: str) -> Resource[Any]:
    contents = kv.schema_contents(
        f"kubernetes-json-schema/{schema_dir}/_definitions.json", kubernetes_version
    )
    return Resource.from_contents(contents)


@functools.cache
def _build(kind: str, api_version: str, kubernetes_version: str) -> tuple[Any, str]:
    schema_dir, version = _schema_dir(kubernetes_version)
    desired = kubernetes_version[1:] if kubernetes_version.startswith("v") else kubernetes_version
    # rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1 (the schema files' naming)
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{api}.json", desired
        )
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(
            version=kv.major_minor(desired), kind=kind, api_version=api_version
        ) from None
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions(schema_dir, desired) @ registry
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return validator, version


def schema_validator(kind: str, api_version: str, kubernetes_version: str) -> tuple[Any, str]:
    """The strict schema validator of a kind, built on first use, and its Kubernetes version."""
    with _build_lock:
        return _build(kind, api_version, kubernetes_version)


def validate_schema(obj: Obj, kubernetes_version: str) -> None:
    """kubernetes_validate.validate(obj, kubernetes_version, strict=True), with cached schemas.

    Raises kubernetes_validate.ValidationError for the first error, as the library does.
    """
    validator, version = schema_validator(obj["kind"], obj["apiVersion"], kubernetes_version)
    try:
        validator.validate(obj)
    except jsonschema.ValidationError as e:
        raise kubernetes_validate.ValidationError(e, version=version) from None


async def validated(obj: Obj, target: Target, kubernetes_version: str) -> Obj:
    """A request body, checked like the real server's strict decoding and validation."""
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", target.kind)
    if obj["apiVersion"] != "v1" or obj["kind"] != target.kind:
        raise bad_request(
            f"the object's apiVersion/kind ({obj['apiVersion']}/{obj['kind']}) "
            f"does not match the request (v1/{target.kind})"
        )
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if not target.namespaced:
        meta.pop("namespace", None)
    elif meta.setdefault("namespace", target.namespace) != target.namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if target.name and meta.get("name") != target.name:
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({target.name})"
        )
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(random.choices(GENERATE_NAME_CHARS, k=5))
    name = meta.get("name", "")
    try:
        await asyncio.to_thread(validate_schema, obj, kubernetes_version)
    except kubernetes_validate.ValidationError as e:
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path).lstrip(".")
        raise invalid(target.kind, name, field, e.message) from None
    check_metadata(target, meta)
    return obj


def check_metadata(target: Target, meta: Obj) -> None:
    """The name and labels have the syntax the real API server demands."""
    name = meta.get("name", "")
    if not name:
        raise invalid(
            target.kind, "", "metadata.name", "Required value: name or generateName is required"
        )
    if target.plural in ("namespaces", "services"):
        pattern, max_len, what = DNS1123_LABEL, 63, "RFC 1123 label"
    else:
        pattern, max_len, what = DNS1123_SUBDOMAIN, 253, "RFC 1123 subdomain"
    if len(name) > max_len or not pattern.fullmatch(name):
        raise invalid(
            target.kind,
            name,
            "metadata.name",
            f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            f"character (at most {max_len} characters)",
        )
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label_name = key.rpartition("/")
        if (
            len(label_name) > 63
            or not QUALIFIED_NAME.fullmatch(label_name)
            or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)))
        ):
            message = f'Invalid value: "{key}": not a qualified name'
            raise invalid(target.kind, name, "metadata.labels", message)
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            message = f'Invalid value: "{value}": not a valid label value'
            raise invalid(target.kind, name, f"metadata.labels[{key}]", message)
