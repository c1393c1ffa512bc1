"""The SSRF classifier and the host vetting that runs after DNS resolution."""

from __future__ import annotations

import ipaddress

import pytest

from omen.media.ssrf import Refused, classify, host_port, normalise_allow_hosts, system_resolver, vet

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just above 172.16/12
    "100.128.0.1",  # just above 100.64/10
    "169.255.0.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]

REFUSED = [
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "an unspecified address"),
    ("127.0.0.1", "a loopback address"),
    ("127.255.255.254", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.1.1", "a link-local address"),
    ("169.254.169.254", "the cloud metadata address"),
    ("100.100.100.200", "the cloud metadata address"),  # Alibaba
    ("192.0.0.192", "the cloud metadata address"),  # Oracle
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("100.127.255.255", "a shared (CGNAT) address"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"),
    ("192.0.2.1", "a reserved address"),  # documentation
    ("198.18.0.1", "a reserved address"),  # benchmarking
    ("::", "an unspecified address"),
    ("::1", "a loopback address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
    ("fc00::1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("fec0::1", "a private address"),
    ("fd00:ec2::254", "the cloud metadata address"),  # AWS over IPv6
    ("ff02::1", "a multicast address"),
    ("2001:db8::1", "a reserved address"),
    ("2001::1", "a reserved address"),  # Teredo
    ("64:ff9b:1::1", "a reserved address"),  # local-use NAT64
    ("::ffff:127.0.0.1", "a loopback address (IPv4-mapped 127.0.0.1)"),
    ("::ffff:10.0.0.5", "a private address (IPv4-mapped 10.0.0.5)"),
    ("::ffff:169.254.169.254", "the cloud metadata address (IPv4-mapped 169.254.169.254)"),
    ("::ffff:100.64.0.1", "a shared (CGNAT) address (IPv4-mapped 100.64.0.1)"),
    ("2002:7f00:1::1", "a loopback address (6to4 127.0.0.1)"),
    ("2002:a00:5::", "a private address (6to4 10.0.0.5)"),
    ("64:ff9b::a00:5", "a private address (NAT64 10.0.0.5)"),
    ("64:ff9b::a9fe:a9fe", "the cloud metadata address (NAT64 169.254.169.254)"),
    ("::127.0.0.1", "a loopback address (IPv4-compatible 127.0.0.1)"),
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert classify(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses(address, reason):
    assert classify(ipaddress.ip_address(address)) == reason


def resolver_for(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve, calls


async def test_vet_resolves_once_and_checks_every_address():
    resolve, calls = resolver_for({"images.example": ["93.184.216.34"], "mixed.example": ["93.184.216.34", "10.0.0.5"]})
    assert await vet("images.example", 443, frozenset(), resolve) == ["93.184.216.34"]
    assert calls == ["images.example"]
    # one private address among public ones is enough to refuse: a resolver picks the order
    with pytest.raises(Refused, match=r"^refused: mixed.example resolves to a private address$"):
        await vet("mixed.example", 443, frozenset(), resolve)


async def test_vet_literals_metadata_names_and_failures():
    resolve, calls = resolver_for({})
    with pytest.raises(Refused, match=r"^refused: a private address 10.0.0.5$"):
        await vet("10.0.0.5", 80, frozenset(), resolve)
    with pytest.raises(Refused, match=r"^refused: a loopback address ::1$"):
        await vet("::1", 80, frozenset(), resolve)
    for name in ("metadata.google.internal", "METADATA.google.internal.", "instance-data"):
        with pytest.raises(Refused, match="is a cloud metadata host"):
            await vet(name, 80, frozenset({host_port(name, 80)}), resolve)
    with pytest.raises(Refused, match=r"cannot resolve nowhere\.example"):
        await vet("nowhere.example", 80, frozenset(), resolve)
    assert calls == ["nowhere.example"]  # literals and metadata names never reach DNS


async def test_allow_hosts_lifts_refusals_except_metadata():
    resolve, _ = resolver_for({"images.internal": ["10.1.2.3"], "imds.internal": ["169.254.169.254"]})
    allow = normalise_allow_hosts(["images.internal:8080", "127.0.0.1:9000", "[::1]:9000", "imds.internal:80"])
    assert await vet("images.internal", 8080, allow, resolve) == ["10.1.2.3"]
    assert await vet("127.0.0.1", 9000, allow, resolve) == ["127.0.0.1"]
    assert await vet("::1", 9000, allow, resolve) == ["::1"]
    with pytest.raises(Refused, match=r"^refused: images.internal resolves to a private address$"):
        await vet("images.internal", 8081, allow, resolve)  # the exception is per port
    with pytest.raises(Refused, match=r"^refused: imds.internal resolves to the cloud metadata address$"):
        await vet("imds.internal", 80, allow, resolve)
    with pytest.raises(Refused, match="metadata"):
        await vet("169.254.169.254", 80, normalise_allow_hosts(["169.254.169.254:80"]), resolve)


async def test_localhost_is_refused_after_real_dns():
    """The system resolver (trio's getaddrinfo) answers 'localhost' with loopback addresses."""
    assert set(await system_resolver("localhost", 80)) & {"127.0.0.1", "::1"}
    with pytest.raises(Refused, match=r"^refused: localhost resolves to a loopback address$"):
        await vet("localhost", 80, normalise_allow_hosts(["127.0.0.1:80"]), system_resolver)


async def test_a_refused_name_does_not_reveal_where_it_points():
    """A client learns that an internal name is refused, not the internal address behind it."""
    resolve, _ = resolver_for({"db.corp.internal": ["10.20.30.40"], "mapped.example": ["::ffff:192.168.7.9"]})
    for name, kind in (("db.corp.internal", "a private address"), ("mapped.example", "a private address")):
        with pytest.raises(Refused) as exc:
            await vet(name, 80, frozenset(), resolve)
        assert str(exc.value) == f"refused: {name} resolves to {kind}"
        assert "10.20" not in str(exc.value) and "192.168" not in str(exc.value)
