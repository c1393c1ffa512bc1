"""Which addresses an image fetch may connect to.

The gateway fetches URLs a client chose, from inside the operator's network; without these checks a
client could read the cloud metadata service (169.254.169.254), an admin panel on 10.x or a database
on localhost through it. The check runs on the *resolved* addresses (a public-looking name can point
anywhere), every address must pass (an attacker controls which one a resolver lists first), and the
fetcher then connects to exactly the vetted addresses, so a second DNS answer cannot change the target
(DNS rebinding).

:func:`classify` names why an address is refused, or returns ``None`` for a public address. IPv6
forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64) are judged by the
embedded IPv4 address, because that is where the packets end up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

import trio

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA = "the cloud metadata address"

# Well-known names of instance metadata services; refused by name, before any DNS query.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)

_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network

# Metadata services: AWS/GCP/Azure/OCI use 169.254.169.254 (IPv6: AWS fd00:ec2::254), Alibaba
# 100.100.100.200, Oracle also 192.0.0.192. Never allowed, not even through allow_hosts.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)

# First match wins; the reason texts read after "resolves to ...".
_V4_RANGES: list[tuple[ipaddress.IPv4Network, str]] = [
    (_N4("0.0.0.0/8"), "an unspecified address"),
    (_N4("127.0.0.0/8"), "a loopback address"),
    (_N4("169.254.0.0/16"), "a link-local address"),
    (_N4("10.0.0.0/8"), "a private address"),
    (_N4("172.16.0.0/12"), "a private address"),
    (_N4("192.168.0.0/16"), "a private address"),
    (_N4("100.64.0.0/10"), "a shared (CGNAT) address"),
    (_N4("224.0.0.0/4"), "a multicast address"),
    (_N4("240.0.0.0/4"), "a reserved address"),  # includes the broadcast address
]

_V6_RANGES: list[tuple[ipaddress.IPv6Network, str]] = [
    (_N6("::/128"), "an unspecified address"),
    (_N6("::1/128"), "a loopback address"),
    (_N6("fe80::/10"), "a link-local address"),
    (_N6("fc00::/7"), "a private address"),  # unique local
    (_N6("fec0::/10"), "a private address"),  # deprecated site-local, still routed inside some networks
    (_N6("ff00::/8"), "a multicast address"),
    (_N6("64:ff9b:1::/48"), "a reserved address"),  # local-use NAT64: the embedding is site-specific
]

_NAT64 = _N6("64:ff9b::/96")
_V4_COMPATIBLE = _N6("::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 are above
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (``"a private address"``...), or ``None`` if it is public."""
    if ip in _METADATA_ADDRESSES:
        return METADATA
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a link-local address"  # fe80::1%eth0 and the like
        embedded = _embedded_v4(ip)
        if embedded is not None:
            inner, form = embedded
            reason = classify(inner)
            return None if reason is None else f"{reason} ({form} {inner})"
        for net6, reason in _V6_RANGES:
            if ip in net6:
                return reason
    else:
        for net4, reason in _V4_RANGES:
            if ip in net4:
                return reason
    # Documentation, benchmarking, Teredo, ORCHID and the other special-purpose blocks.
    if not ip.is_global or ip.is_reserved:
        return "a reserved address"
    return None


def parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (trio's getaddrinfo), in the resolver's order, deduplicated."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


class Refused(Exception):
    """The URL's host may not be fetched; ``str()`` is the reason shown to the client."""


class Unresolvable(Refused):
    """The host name has no address (a fetch failure rather than a policy refusal)."""


def _shown(name: str) -> str:
    """A host name as quoted in an error: client-chosen, so bounded."""
    return name if len(name) <= 80 else name[:77] + "..."


def host_port(host: str, port: int) -> str:
    """``allow_hosts`` key of a URL's host: ``example.com:443``, ``[::1]:8080``."""
    host = host.lower().rstrip(".")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalise_allow_hosts(entries: Iterable[str]) -> frozenset[str]:
    out = set()
    for entry in entries:
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit():
            out.add(host_port(host.strip("[]"), int(port)))
    return frozenset(out)


async def vet(host: str, port: int, allow_hosts: frozenset[str], resolver: Resolver) -> list[str]:
    """The addresses of ``host`` the fetcher may connect to (all of them, resolver order).

    Raises :class:`Refused` if the name is a metadata host, cannot be resolved, or any address is not
    public — unless ``host:port`` is in ``allow_hosts``, which lifts every refusal except metadata.
    """
    name = host.lower().rstrip(".")
    if name in METADATA_HOSTS:
        raise Refused(f"refused: {name} is a cloud metadata host")
    shown = _shown(name)
    allowed = host_port(name, port) in allow_hosts
    literal = parse_ip(name)
    if literal is not None:
        reason = classify(literal)
        if reason is not None and (reason.startswith(METADATA) or not allowed):
            raise Refused(f"refused: {reason} {literal}")
        return [str(literal)]
    try:
        addresses = await resolver(name, port)
    except (OSError, ValueError):  # gaierror (no such name), UnicodeError (an empty or over-long label)
        raise Unresolvable(f"cannot resolve {shown}") from None
    if not addresses:
        raise Unresolvable(f"cannot resolve {shown}")
    for address in addresses:
        ip = parse_ip(address)
        if ip is None:
            raise Refused(f"refused: {shown} resolves to an unparsable address")
        reason = classify(ip)
        if reason is not None and (reason.startswith(METADATA) or not allowed):
            # The kind of address only: the address itself (or the IPv4 one inside it) would tell any
            # client where an internal name points, a map of the operator's network one name at a time.
            raise Refused(f"refused: {shown} resolves to {reason.split(' (', 1)[0]}")
    return addresses
