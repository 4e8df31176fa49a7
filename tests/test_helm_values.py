"""The files in helm-values/ are valid for Zero-to-JupyterHub 4.4.0 and for Kubernetes.

Values files are checked as `helm install` sees them: deep-merged over the chart's default
values, then validated against the chart's values schema (tests/data/z2jh-4.4.0, copied
from the chart). Manifests are checked with kubernetes-validate's strict schemas.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import DOCKER_STACKS

yaml = pytest.importorskip("yaml", reason="needs PyYAML (the 'test' extra)")
jsonschema = pytest.importorskip("jsonschema", reason="needs jsonschema (the 'test' extra)")

REPO = Path(__file__).resolve().parent.parent
HELM_VALUES = REPO / "helm-values"
CHART_DATA = Path(__file__).resolve().parent / "data" / "z2jh-4.4.0"
VALUES_FILES = sorted(HELM_VALUES.glob("*.yaml"))
MANIFEST_FILES = sorted((HELM_VALUES / "manifests").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.29", "1.37"]


def helm_merge(defaults: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Merge user values over chart defaults as Helm does.

    Maps merge key by key, anything else (lists included) replaces, and a user null
    deletes the key.
    """
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _parsed_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_yaml(path: Path) -> Any:
    """A fresh copy of a YAML file's content, parsed once per session."""
    return copy.deepcopy(_parsed_yaml(path))


def chart_defaults() -> dict[str, Any]:
    return load_yaml(CHART_DATA / "chart-default-values.yaml")


def chart_values(values_file: Path) -> dict[str, Any]:
    """The values the chart renders with for one of our values files."""
    return helm_merge(chart_defaults(), load_yaml(values_file))


def chart_version() -> str:
    match = re.search(r"\btag (\d+\.\d+\.\d+)\b", (CHART_DATA / "README.md").read_text())
    assert match, "tests/data/z2jh-4.4.0/README.md names no chart tag"
    return match.group(1)


def schema_errors(values: dict[str, Any]) -> list[str]:
    schema = json.loads((CHART_DATA / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(values)
    ]


def test_helm_values_directory_has_values_files() -> None:
    names = {path.name for path in VALUES_FILES}
    assert {"config.yaml", "config-initcontainer.yaml"} <= names


def test_merge_deletes_key_for_user_null() -> None:
    merged = helm_merge({"singleuser": {"uid": 1000, "fsGid": 100}}, {"singleuser": {"uid": None}})
    assert merged == {"singleuser": {"fsGid": 100}}


def test_merge_replaces_lists() -> None:
    merged = helm_merge({"a": {"items": [1, 2, 3]}}, {"a": {"items": [9]}})
    assert merged == {"a": {"items": [9]}}


def test_merge_merges_maps_and_keeps_defaults() -> None:
    defaults = {"hub": {"config": {"JupyterHub": {"admin_access": True}}, "baseUrl": "/"}}
    user = {"hub": {"config": {"JupyterHub": {"spawner_class": "nfsuid"}}}}
    merged = helm_merge(defaults, user)
    assert merged == {
        "hub": {
            "config": {"JupyterHub": {"admin_access": True, "spawner_class": "nfsuid"}},
            "baseUrl": "/",
        }
    }
    assert defaults["hub"]["config"]["JupyterHub"] == {"admin_access": True}


def test_chart_defaults_alone_pass_the_schema() -> None:
    assert schema_errors(chart_defaults()) == []


def test_schema_rejects_unknown_singleuser_key() -> None:
    values = chart_values(HELM_VALUES / "config.yaml")
    values["singleuser"]["runAsUser"] = 1000
    assert schema_errors(values) != []


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_merged_over_chart_defaults_passes_schema(values_file: Path) -> None:
    assert schema_errors(chart_values(values_file)) == []


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_selects_nfsuid_spawner(values_file: Path) -> None:
    values = chart_values(values_file)
    assert values["hub"]["config"]["JupyterHub"]["spawner_class"] == "nfsuid"
    assert "NFSUIDSpawner" in values["hub"]["config"]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_runs_start_singleuser_through_start_sh(values_file: Path) -> None:
    assert chart_values(values_file)["singleuser"]["cmd"] in (
        "start-singleuser.py",
        ["start-singleuser.py"],
    )


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_leaves_chart_per_user_storage_off(values_file: Path) -> None:
    assert chart_values(values_file)["singleuser"]["storage"]["type"] == "none"


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_pins_every_profile_image(values_file: Path) -> None:
    profiles = chart_values(values_file)["singleuser"]["profileList"]
    images = [profile["kubespawner_override"]["image"] for profile in profiles]
    assert images
    for image in images:
        assert re.fullmatch(r"quay\.io/jupyter/[a-z-]+-notebook:\d{4}-\d{2}-\d{2}", image), image


def test_recommended_values_offer_the_docker_stacks_profiles() -> None:
    profiles = chart_values(HELM_VALUES / "config.yaml")["singleuser"]["profileList"]
    stacks = {
        profile["kubespawner_override"]["image"].split("/")[-1].split(":")[0]
        for profile in profiles
    }
    assert stacks == {f"{name}-notebook" for name in DOCKER_STACKS}
    assert [p.get("default", False) for p in profiles].count(True) == 1


def test_hub_source_values_mount_share_read_only_at_hub_share_path() -> None:
    values = chart_values(HELM_VALUES / "config.yaml")
    spawner_config = values["hub"]["config"]["NFSUIDSpawner"]
    assert spawner_config["identity_source"] == "hub"
    mounts = [
        m
        for m in values["hub"]["extraVolumeMounts"]
        if m["mountPath"] == spawner_config["hub_share_path"]
    ]
    assert len(mounts) == 1 and mounts[0].get("readOnly") is True
    (volume,) = [v for v in values["hub"]["extraVolumes"] if v["name"] == mounts[0]["name"]]
    assert volume["persistentVolumeClaim"] == {
        "claimName": spawner_config["nfs_pvc_name"],
        "readOnly": True,
    }


def test_initcontainer_values_give_the_hub_no_share_mount() -> None:
    values = chart_values(HELM_VALUES / "config-initcontainer.yaml")
    assert values["hub"]["config"]["NFSUIDSpawner"]["identity_source"] == "initcontainer"
    assert "hub_share_path" not in values["hub"]["config"]["NFSUIDSpawner"]
    assert values["hub"]["extraVolumes"] == [] and values["hub"]["extraVolumeMounts"] == []


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_file_blocks_metadata_without_privileged_init_container(values_file: Path) -> None:
    singleuser = chart_values(values_file)["singleuser"]
    assert singleuser["cloudMetadata"]["blockWithIptables"] is False
    assert singleuser["networkPolicy"]["enabled"] is True
    assert singleuser["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (HELM_VALUES / "hub-image" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_hub_image_builds_from_the_chart_versions_hub_image() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", f"quay.io/jupyterhub/k8s-hub:{chart_version()}")


def test_hub_image_pip_installs_the_package_as_root_then_drops_back() -> None:
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users[0] == "root" and users[-1] == "${NB_USER}"
    installs = [
        index
        for index, (keyword, rest) in enumerate(instructions)
        if keyword == "RUN" and re.search(r"\bpip install\b.*nfsuidspawner", rest)
    ]
    assert installs, "no RUN pip install of nfsuidspawner"
    user_indexes = [i for i, (keyword, _) in enumerate(instructions) if keyword == "USER"]
    assert user_indexes[0] < installs[0] < user_indexes[-1]


def manifest_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in MANIFEST_FILES:
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document is not None:
                documents.append((f"{path.name}#{index}-{document['kind']}", document))
    return documents


MANIFESTS = manifest_documents()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", [m for _, m in MANIFESTS], ids=[i for i, _ in MANIFESTS])
def test_manifest_validates_strictly(manifest: dict[str, Any], version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="needs kubernetes-validate (the 'test' extra)"
    )
    kubernetes_validate.validate(manifest, version, strict=True)


def test_strict_validation_rejects_unknown_field() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="needs kubernetes-validate (the 'test' extra)"
    )
    pv = copy.deepcopy(next(m for _, m in MANIFESTS if m["kind"] == "PersistentVolume"))
    pv["spec"]["nfs"]["mountOptions"] = ["vers=3"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pv, KUBERNETES_VERSIONS[-1], strict=True)


def test_pvc_binds_to_the_nfs_pv() -> None:
    kinds = {m["kind"]: m for _, m in MANIFESTS}
    pv, pvc = kinds["PersistentVolume"], kinds["PersistentVolumeClaim"]
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] == "hpc-pv"
    assert pvc["spec"]["storageClassName"] == pv["spec"]["storageClassName"] == ""
    assert pvc["metadata"] == {"name": "hpc-shared-pvc", "namespace": "jupyter-system"}
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["nfs"] == {"server": "aixsky.msxf.local", "path": "/hpc"}


def test_ensure_pv_rbac_grants_only_pv_get_and_create_to_the_hub() -> None:
    role = next(m for _, m in MANIFESTS if m["kind"] == "ClusterRole")
    binding = next(m for _, m in MANIFESTS if m["kind"] == "ClusterRoleBinding")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "create"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "jupyter-system"}
    ]
