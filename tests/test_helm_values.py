"""The files in helm-values/ are valid for Zero-to-JupyterHub 4.4.0 and for Kubernetes.

Values files are checked as `helm install` sees them: deep-merged over the chart's default
values, then validated against the chart's values schema (tests/data/z2jh-4.4.0, copied
from the chart). Manifests are checked with kubernetes-validate's strict schemas.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
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


# Lab egress, as z2jh 4.4.0 renders singleuser.networkPolicy into the singleuser-server
# NetworkPolicy (templates/singleuser/netpol.yaml, with the egressAllowRules rendered by
# templates/_helpers-netpol.tpl). Rules are Kubernetes NetworkPolicy egress rules as dicts.

PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
PROTOCOLS = ("TCP", "UDP", "SCTP")
DNS = frozenset({("TCP", 53, 53), ("UDP", 53, 53)})
NFS_SERVER_ANCHOR = "nfs_server"
# What both values files asked of singleuser.networkPolicy before the NFS server was
# excepted: the chart's rules, with the cloud metadata server left out.
NETWORK_POLICY_BEFORE = {"enabled": True, "egressAllowRules": {"cloudMetadataServer": False}}


def singleuser_egress_rules(values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The lab pods' egress rules, or None when the chart renders no NetworkPolicy.

    Fixed rules to the hub (8081), proxy (8000) and autohttps (8080, 8443) pods, then one
    rule per egressAllowRules flag, then singleuser.networkPolicy.egress as given.
    """
    policy = values["singleuser"]["networkPolicy"]
    if not policy["enabled"]:
        return None
    allow = policy["egressAllowRules"]
    metadata = f"{values['singleuser']['cloudMetadata']['ip']}/32"
    private = [{"ipBlock": {"cidr": cidr}} for cidr in PRIVATE_RANGES]

    def to_component(component: str, *ports: int) -> dict[str, Any]:
        return {
            "to": [{"podSelector": {"matchLabels": {"component": component}}}],
            "ports": [{"port": port} for port in ports],
        }

    rules = [to_component("hub", 8081), to_component("proxy", 8000)]
    rules.append(to_component("autohttps", 8080, 8443))
    dns_peers: list[dict[str, Any]] = []
    if allow["dnsPortsCloudMetadataServer"]:
        dns_peers.append({"ipBlock": {"cidr": metadata}})
    if allow["dnsPortsKubeSystemNamespace"]:
        kube_system = {"kubernetes.io/metadata.name": "kube-system"}
        dns_peers.append({"namespaceSelector": {"matchLabels": kube_system}})
    if allow["dnsPortsPrivateIPs"]:
        dns_peers += private
    if dns_peers:
        dns_ports = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
        rules.append({"ports": dns_ports, "to": dns_peers})
    if allow["nonPrivateIPs"]:
        except_ = [*PRIVATE_RANGES, metadata]
        rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": except_}}]})
    if allow["privateIPs"]:
        rules.append({"to": private})
    if allow["cloudMetadataServer"]:
        rules.append({"to": [{"ipBlock": {"cidr": metadata}}]})
    return rules + copy.deepcopy(policy["egress"])


def _peer_covers(peer: dict[str, Any], address: ipaddress.IPv4Address) -> bool:
    """Whether a `to` peer covers an address outside the cluster.

    podSelector and namespaceSelector peers select pods; only an ipBlock covers an
    outside address. Like the API server, refuse an `except` that is not a strict subset
    of `cidr`.
    """
    block = peer.get("ipBlock")
    if block is None:
        return False
    cidr = ipaddress.ip_network(block["cidr"])
    excepts = [ipaddress.ip_network(entry) for entry in block.get("except", [])]
    for entry in excepts:
        if not (entry.subnet_of(cidr) and entry.prefixlen > cidr.prefixlen):
            raise ValueError(f"except {entry} is not a strict subset of {cidr}")
    return address in cidr and not any(address in entry for entry in excepts)


def _rule_ports(rule: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(protocol, first, last) for each port a rule opens to an outside address.

    No ports means every port of every protocol; protocol defaults to TCP; a port without
    a number means every port of its protocol. A named port is a port of the destination
    pod, which an outside address does not have.
    """
    entries = rule.get("ports") or []
    if not entries:
        return [(protocol, 1, 65535) for protocol in PROTOCOLS]
    opened = []
    for entry in entries:
        protocol, port = entry.get("protocol", "TCP"), entry.get("port")
        if port is None:
            opened.append((protocol, 1, 65535))
        elif isinstance(port, int):
            opened.append((protocol, port, entry.get("endPort", port)))
    return opened


def open_ports(rules: list[dict[str, Any]] | None, address: str) -> frozenset[tuple[str, int, int]]:
    """The ports a lab can reach at an address outside the cluster, as merged ranges.

    NetworkPolicy only allows: an address gets the union of what every rule covering it
    opens, and nothing else. A rule without `to` covers every address; no policy at all
    (None) leaves everything open.
    """
    ip = ipaddress.IPv4Address(address)
    if rules is None:
        return frozenset((protocol, 1, 65535) for protocol in PROTOCOLS)
    ranges: list[tuple[str, int, int]] = []
    for rule in rules:
        peers = rule.get("to") or []
        if not peers or any(_peer_covers(peer, ip) for peer in peers):
            ranges += _rule_ports(rule)
    merged: list[tuple[str, int, int]] = []
    for protocol, first, last in sorted(ranges):
        if merged and merged[-1][0] == protocol and first <= merged[-1][2] + 1:
            merged[-1] = (protocol, merged[-1][1], max(last, merged[-1][2]))
        else:
            merged.append((protocol, first, last))
    return frozenset(merged)


def opens(ranges: frozenset[tuple[str, int, int]], protocol: str, port: int) -> bool:
    return any(p == protocol and first <= port <= last for p, first, last in ranges)


def _nfs_server_events(values_file: Path) -> tuple[list[Any], int]:
    events = list(yaml.parse(values_file.read_text()))
    anchored = [
        index
        for index, event in enumerate(events)
        if isinstance(event, yaml.ScalarEvent) and event.anchor == NFS_SERVER_ANCHOR
    ]
    assert len(anchored) == 1, (
        f"{values_file.name}: &{NFS_SERVER_ANCHOR} is set {len(anchored)} times"
    )
    return events, anchored[0]


def nfs_server(values_file: Path) -> ipaddress.IPv4Network:
    """The NFS server's address(es): the one value at the &nfs_server anchor."""
    events, index = _nfs_server_events(values_file)
    return ipaddress.IPv4Network(events[index].value)


def chart_values_with_nfs_server(values_file: Path, cidr: str) -> dict[str, Any]:
    """chart_values for the values file with cidr set at the &nfs_server anchor."""
    events, index = _nfs_server_events(values_file)
    old = events[index]
    events[index] = yaml.ScalarEvent(old.anchor, old.tag, old.implicit, cidr, style=old.style)
    return helm_merge(chart_defaults(), yaml.safe_load(yaml.emit(events)))


def chart_values_before_nfs_rule(values_file: Path) -> dict[str, Any]:
    """chart_values with singleuser.networkPolicy as it was before the NFS server rule."""
    values = load_yaml(values_file)
    values["singleuser"]["networkPolicy"] = copy.deepcopy(NETWORK_POLICY_BEFORE)
    return helm_merge(chart_defaults(), values)


def boundary_addresses(*rule_sets: list[dict[str, Any]] | None) -> set[str]:
    """Each end of every ipBlock range in the rules, and the addresses just outside.

    What the rules allow is the same everywhere between two such addresses, so comparing
    two rule sets at these addresses compares them at every address.
    """
    networks = {ipaddress.IPv4Network("0.0.0.0/0")}
    for rules in rule_sets:
        for rule in rules or []:
            for peer in rule.get("to") or []:
                block = peer.get("ipBlock")
                if block:
                    networks.add(ipaddress.IPv4Network(block["cidr"]))
                    networks.update(ipaddress.IPv4Network(e) for e in block.get("except", []))
    edges = set()
    for network in networks:
        first, last = int(network.network_address), int(network.broadcast_address)
        edges.update(n for n in (first - 1, first, last, last + 1) if 0 <= n < 2**32)
    return {str(ipaddress.IPv4Address(n)) for n in edges}


NFS_SERVER_CASES = {
    "as-set": None,
    "public": "203.0.113.7/32",
    "private": "10.20.30.40/32",
    "public-subnet": "198.51.100.0/28",
}


@pytest.mark.parametrize("case", NFS_SERVER_CASES)
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_labs_reach_the_nfs_server_on_no_port_but_dns(values_file: Path, case: str) -> None:
    """No egress rule opens an NFS port, or any port below 1024 but 53, to the NFS server.

    The kubelet mounts the share from the node, so a lab never needs the server. A lab
    that reaches it can bind a port below 1024 under containerd 2.x and speak AUTH_SYS as
    any uid. The chart's dnsPortsPrivateIPs rule opens port 53 to all of 10/8, 172.16/12
    and 192.168/16, so a server at a private address is reachable on 53: no NFS service
    listens there (nfsd is 2049, the portmapper 111, which names mountd's port), and
    NetworkPolicy cannot take an address out of that rule.
    """
    cidr = NFS_SERVER_CASES[case] or str(nfs_server(values_file))
    rules = singleuser_egress_rules(chart_values_with_nfs_server(values_file, cidr))
    network = ipaddress.IPv4Network(cidr)
    for address in {str(network.network_address), str(network.broadcast_address)}:
        ranges = open_ports(rules, address)
        assert ranges <= DNS, f"{address}: {sorted(ranges)}"
        assert not any(opens(ranges, p, port) for p in PROTOCOLS for port in (111, 2049))


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_nfs_server_is_one_ipv4_address_or_network_to_set(values_file: Path) -> None:
    assert nfs_server(values_file).version == 4


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_labs_keep_every_other_egress_the_chart_allowed_before(values_file: Path) -> None:
    values = chart_values(values_file)
    after = singleuser_egress_rules(values)
    before = singleuser_egress_rules(chart_values_before_nfs_rule(values_file))
    server = nfs_server(values_file)
    changed = {
        address
        for address in boundary_addresses(before, after)
        if ipaddress.IPv4Address(address) not in server
        and open_ports(before, address) != open_ports(after, address)
    }
    assert changed == set()


EGRESS_EXAMPLES = {
    "public-https": ("8.8.8.8", "TCP", 443, True),
    "public-dns": ("1.1.1.1", "UDP", 53, True),
    "private-dns": ("10.96.0.10", "UDP", 53, True),
    "private-https": ("10.1.2.3", "TCP", 443, False),
    "private-nfs": ("192.168.1.10", "TCP", 2049, False),
    "metadata-http": ("169.254.169.254", "TCP", 80, False),
    "metadata-dns": ("169.254.169.254", "UDP", 53, True),
}


@pytest.mark.parametrize("example", EGRESS_EXAMPLES)
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_labs_reach_public_addresses_and_dns_but_not_private_or_metadata(
    values_file: Path, example: str
) -> None:
    address, protocol, port, reachable = EGRESS_EXAMPLES[example]
    rules = singleuser_egress_rules(chart_values(values_file))
    assert opens(open_ports(rules, address), protocol, port) is reachable


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_policy_before_the_nfs_rule_opens_every_port_to_a_public_nfs_server(
    values_file: Path,
) -> None:
    """Why test_labs_reach_the_nfs_server_on_no_port_but_dns fails for the old values.

    The chart's nonPrivateIPs rule covers 0.0.0.0/0 but the private ranges and the
    metadata server, so a server at a public address got every port.
    """
    rules = singleuser_egress_rules(chart_values_before_nfs_rule(values_file))
    assert open_ports(rules, "203.0.113.7") == {(p, 1, 65535) for p in PROTOCOLS}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_lab_egress_rules_validate_strictly(values_file: Path, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="needs kubernetes-validate (the 'test' extra)"
    )
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "singleuser"},
        "spec": {
            "podSelector": {"matchLabels": {"component": "singleuser-server"}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": singleuser_egress_rules(chart_values(values_file)),
        },
    }
    kubernetes_validate.validate(policy, version, strict=True)


def test_egress_evaluator_refuses_except_outside_its_cidr() -> None:
    rules = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.0.2.10/32"]}}]}]
    with pytest.raises(ValueError, match="strict subset"):
        open_ports(rules, "10.1.1.1")


def test_egress_evaluator_leaves_everything_open_without_a_policy() -> None:
    values = helm_merge(chart_defaults(), {"singleuser": {"networkPolicy": {"enabled": False}}})
    assert opens(open_ports(singleuser_egress_rules(values), "10.1.2.3"), "TCP", 2049)


def test_egress_evaluator_never_covers_an_outside_address_by_selector() -> None:
    rules = [{"to": [{"podSelector": {}}], "ports": [{"port": 2049}]}]
    assert open_ports(rules, "10.1.2.3") == frozenset()


def test_egress_evaluator_opens_every_port_for_a_rule_without_ports() -> None:
    rules = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]
    assert open_ports(rules, "10.2.0.1") == {(p, 1, 65535) for p in PROTOCOLS}


def test_egress_evaluator_leaves_out_an_ip_blocks_exceptions() -> None:
    rules = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]
    assert open_ports(rules, "10.1.0.1") == frozenset()


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
