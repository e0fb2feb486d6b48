"""SSRF guard for the CalDAV URLs mentors type into their page.

A mentor link is not an admin: without this guard anyone holding one could make the daemon
send requests to 127.0.0.1, the cloud metadata address or the office network and read the
answers back through error messages. The host is resolved and every address it resolves to
must be public, unless the admin set `[http] allow_private_caldav = true` (a CalDAV server on
the same host or LAN).

Known limit: the connector resolves the name again when it connects, so a DNS answer that
changes in between (rebinding) is not caught here; redirects are the connector's business.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from syncd.errors import UserError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> addresses as text
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(UserError):
    """The URL is not one syncd may connect to on a mentor's behalf."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (A and AAAA)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"cannot resolve the host name {host!r}; check the URL") from None
    return [str(info[4][0]) for info in infos]


def check_url(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
    """Refuse URLs that are not http(s), carry credentials, or reach a non-public address."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrl("the calendar URL must start with https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("put the user name and password in their own fields, not in the URL")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the calendar URL has no host name")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise UnsafeUrl(
            "the port in the calendar URL is not a number between 0 and 65535"
        ) from None
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"the host name {host!r} has no address")
    if allow_private:
        return
    for text in addresses:
        reason = refusal_reason(ipaddress.ip_address(_strip_zone(text)))
        if reason is not None:
            raise UnsafeUrl(
                f"{host} resolves to {reason} ({text}); syncd only connects to public "
                "calendar servers unless the admin allows private ones"
            )


def _strip_zone(text: str) -> str:
    # getaddrinfo writes scoped IPv6 addresses as fe80::1%eth0; ipaddress in 3.11 wants no scope.
    return text.split("%", 1)[0]


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is not public (in words), or None when it is."""
    address = _embedded_ipv4(address)
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        # Shared address space (100.64/10), documentation ranges and the like.
        (not address.is_global, "a non-public address"),
    )
    return next((words for failed, words in checks if failed), None)


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or 6to4 (2002::/16) address.

    Python 3.11 judges ::ffff:127.0.0.1 by its IPv6 form and would call it public.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return embedded
    return address
