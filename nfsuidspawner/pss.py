"""The Kubernetes Pod Security Standards, "baseline" and "restricted", written out as checks.

Written from the published standard (kubernetes.io/docs/concepts/security/
pod-security-standards/, policy version "latest" as of Kubernetes 1.29 to 1.37)
for camelCase pod dicts. Each check returns the violations it finds, in words.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _sc(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def baseline(pod: dict[str, Any]) -> list[str]:
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"{field} is true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod windowsOptions.hostProcess")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"volume {volume['name']} is a hostPath")
    for sysctl in psc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']} is not safe")
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("pod seccompProfile is Unconfined")
    if (psc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        found.append("pod appArmorProfile is not RuntimeDefault or Localhost")
    for options in [psc.get("seLinuxOptions") or {}] + [
        _sc(c).get("seLinuxOptions") or {} for c in _containers(pod)
    ]:
        if (
            options.get("type", "") not in SELINUX_TYPES
            or options.get("user")
            or options.get("role")
        ):
            found.append(f"seLinuxOptions {options} are not allowed")
    for c in _containers(pod):
        sc = _sc(c)
        name = c["name"]
        if sc.get("privileged"):
            found.append(f"container {name} is privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"container {name} windowsOptions.hostProcess")
        extra = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if extra:
            found.append(f"container {name} adds capabilities {sorted(extra)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"container {name} uses hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"container {name} procMount is {sc['procMount']}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"container {name} seccompProfile is Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") not in (
            None,
            "RuntimeDefault",
            "Localhost",
        ):
            found.append(f"container {name} appArmorProfile is not allowed")
    return found


def restricted(pod: dict[str, Any]) -> list[str]:
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    found = baseline(pod)
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} has type {sorted(kinds)}")
    if psc.get("runAsUser") == 0:
        found.append("pod runAsUser is 0")
    for c in _containers(pod):
        sc = _sc(c)
        name = c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"container {name} does not set allowPrivilegeEscalation false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"container {name} does not run with runAsNonRoot true")
        if sc.get("runAsUser") == 0:
            found.append(f"container {name} runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"container {name} seccompProfile is not RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"container {name} does not drop ALL capabilities")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            found.append(f"container {name} adds capabilities {sorted(extra)}")
    return found


def level(pod: dict[str, Any]) -> tuple[str, list[str]]:
    """The strictest Pod Security level the pod meets, and what keeps it from the next."""
    if not (why := restricted(pod)):
        return "restricted", []
    if not (below := baseline(pod)):
        return "baseline", why
    return "privileged", below
