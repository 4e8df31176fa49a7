"""The sandbox kubelet's pod addresses: a pool of 127.x.y.z addresses from the pod CIDR.

There are no network namespaces, so each pod gets an address of its own on loopback: the first
host address of the CIDR is the gateway, pods get the following ones, the lowest free one first.
An address where another process already holds one of the pod's ports is skipped (another
sandbox on this machine could use the same range, and a lab there would otherwise answer for
this pod); it is tried again for the next pod.

Allocation does not rescan the addresses in use: the pool keeps a high-water mark (every address
below it has been handed out at least once) and a sorted list of the addresses below it that
are free again or were skipped, so a pod costs O(free below the mark) instead of O(pods).
"""

from __future__ import annotations

import bisect
import ipaddress
import socket

from .runtime import Obj


def container_ports(pod: Obj) -> list[int]:
    """The containerPorts of a pod's containers (what must be free on its address)."""
    return [
        port["containerPort"]
        for c in pod["spec"].get("containers", [])
        for port in c.get("ports") or []
    ]


def can_bind(addr: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((addr, port))
        except OSError:
            return False
    return True


class AddressPool:
    """The pod addresses of `cidr` (inside 127.0.0.0/8)."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        if not self.network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"pod_cidr must be inside 127.0.0.0/8, not {cidr}")
        hosts = iter(self.network.hosts())  # a /32 gives a list
        next(hosts, None)  # the gateway
        first = next(hosts, None)
        self._first = int(first) if first is not None else 0
        # hosts() leaves out the broadcast address, except in a /31 or /32.
        last = int(self.network.broadcast_address)
        if self.network.prefixlen < self.network.max_prefixlen - 1:
            last -= 1
        self._last = last if first is not None else -1
        self.clear()

    def clear(self) -> None:
        """Forget every address handed out."""
        self._in_use: set[int] = set()
        self._mark = self._first  # never handed out from here on
        self._below: list[int] = []  # sorted; below the mark and not in use

    def allocate(self, ports: list[int]) -> str | None:
        """The lowest free address where all `ports` can be bound; None if there is none."""
        for i, addr in enumerate(self._below):
            text = str(ipaddress.IPv4Address(addr))
            if all(can_bind(text, port) for port in ports):
                del self._below[i]
                self._in_use.add(addr)
                return text
        while self._mark <= self._last:
            addr = self._mark
            self._mark += 1
            text = str(ipaddress.IPv4Address(addr))
            if all(can_bind(text, port) for port in ports):
                self._in_use.add(addr)
                return text
            self._below.append(addr)  # skipped: the mark only grows, so this stays sorted
        return None

    def release(self, address: str) -> None:
        """Return an address to the pool (nothing happens if it was not handed out)."""
        addr = int(ipaddress.IPv4Address(address))
        if addr in self._in_use:
            self._in_use.remove(addr)
            bisect.insort(self._below, addr)
