"""The kubelet's pod address pool: lowest free address first, skips held ports, fast at a /16."""

import socket
import time

import pytest

from nfsuidspawner.sandbox.kubelet import DEFAULT_POD_CIDR
from nfsuidspawner.sandbox.podips import AddressPool


def test_pool_skips_the_gateway_and_hands_out_the_lowest_free_address() -> None:
    pool = AddressPool("127.0.93.0/24")
    assert [pool.allocate([]) for _ in range(3)] == ["127.0.93.2", "127.0.93.3", "127.0.93.4"]
    pool.release("127.0.93.3")
    pool.release("127.0.93.2")
    assert pool.allocate([]) == "127.0.93.2"
    assert pool.allocate([]) == "127.0.93.3"
    assert pool.allocate([]) == "127.0.93.5"


def test_pool_skips_an_address_whose_port_is_held_and_retries_it_later() -> None:
    pool = AddressPool("127.0.93.0/24")
    with socket.socket() as squatter:
        squatter.bind(("127.0.93.2", 7777))
        assert pool.allocate([7777]) == "127.0.93.3"
        assert pool.allocate([]) == "127.0.93.2"  # no ports: the address is fine
    assert pool.allocate([7777]) == "127.0.93.4"
    with socket.socket() as squatter:
        squatter.bind(("127.0.93.5", 7777))
        assert pool.allocate([7777]) == "127.0.93.6"
    assert pool.allocate([7777]) == "127.0.93.5"  # the squatter has gone


@pytest.mark.parametrize(
    "cidr, addresses",
    [
        ("127.0.93.0/30", ["127.0.93.2"]),
        ("127.0.93.0/31", ["127.0.93.1"]),
        ("127.0.93.7/32", []),
    ],
    ids=["slash-30", "slash-31", "slash-32"],
)
def test_pool_is_exhausted_like_the_hosts_of_its_network(cidr: str, addresses: list[str]) -> None:
    pool = AddressPool(cidr)
    assert [pool.allocate([]) for _ in addresses] == addresses
    assert pool.allocate([]) is None
    pool.clear()
    assert [pool.allocate([]) for _ in addresses] == addresses


def test_pool_refuses_addresses_outside_loopback() -> None:
    with pytest.raises(ValueError, match=r"inside 127\.0\.0\.0/8"):
        AddressPool("10.0.0.0/16")


def test_default_pool_holds_hundreds_of_pods_quickly() -> None:
    pool = AddressPool(DEFAULT_POD_CIDR)
    start = time.perf_counter()
    addresses = [pool.allocate([8888]) for _ in range(1000)]
    elapsed = time.perf_counter() - start
    assert len(set(addresses)) == 1000 and None not in addresses
    assert addresses[-1] == "127.90.3.233"  # 2 + 999 = 3 * 256 + 233
    assert elapsed < 2.0, f"1000 pod addresses took {elapsed:.2f} s"
