"""The SSRF guard on mentor-supplied CalDAV URLs: schemes, credentials, and every kind of
non-public address (IPv4, IPv6, IPv4-mapped and 6to4), resolved through a fake resolver so the
tests need no DNS; plus a few cases through the real system resolver with numeric hosts."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from syncd.api.ssrf import UnsafeUrl, check_url, refusal_reason, system_resolver


def resolver(*addresses: str) -> tuple[list[tuple[str, int]], object]:
    """A resolver answering `addresses` for any host, and the list of what it was asked."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return list(addresses)

    return asked, resolve


def check(url: str, *addresses: str, allow_private: bool = False) -> None:
    _, resolve = resolver(*addresses)
    check_url(url, allow_private=allow_private, resolve=resolve)  # type: ignore[arg-type]


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.10", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),  # broadcast
    ("100.64.0.1", "non-public"),  # carrier-grade NAT, shared address space
    ("192.0.2.10", "private"),  # documentation range
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("2002:c0a8:0101::1", "private"),  # 6to4 wrapping 192.168.1.1
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
]


@pytest.mark.parametrize(("address", "words"), REFUSED)
def test_non_public_addresses_are_refused(address: str, words: str) -> None:
    with pytest.raises(UnsafeUrl, match=f"resolves to an? {words} address"):
        check("https://dav.example.org/", address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    check("https://dav.example.org/cal/", address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:0808:0808::1"]
)
def test_refusal_reason_is_none_for_public_addresses(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.5"):
        check("https://dav.example.org/", "93.184.216.34", "10.0.0.5")


def test_private_addresses_pass_when_the_admin_allows_them() -> None:
    check("http://127.0.0.1:5232/", "127.0.0.1", allow_private=True)
    check("http://[::1]:5232/", "::1", allow_private=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://dav.example.org/", "must start with https://"),
        ("file:///etc/passwd", "must start with https://"),
        ("gopher://127.0.0.1:25/", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("dav.example.org/calendars", "must start with https://"),
        ("https://", "has no host"),
        ("https://user:pw@dav.example.org/", "not in the URL"),
        ("https://user@dav.example.org/", "not in the URL"),
        ("https://dav.example.org:99999/", "port"),
        ("https://dav.example.org:abc/", "port"),
    ],
)
def test_malformed_or_dangerous_urls_are_refused_before_resolving(url: str, message: str) -> None:
    asked, resolve = resolver("93.184.216.34")
    with pytest.raises(UnsafeUrl, match=message):
        check_url(url, allow_private=True, resolve=resolve)  # type: ignore[arg-type]
    assert asked == []


def test_the_resolver_gets_the_host_and_the_default_or_given_port() -> None:
    asked, resolve = resolver("93.184.216.34")
    for url in ("https://Dav.Example.org/x", "http://dav.example.org/", "https://h.example:8443/"):
        check_url(url, allow_private=False, resolve=resolve)  # type: ignore[arg-type]
    assert asked == [("dav.example.org", 443), ("dav.example.org", 80), ("h.example", 8443)]


def test_a_host_without_addresses_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="has no address"):
        check("https://dav.example.org/")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/",  # hexadecimal shorthand
        "http://0/",
        "http://10.1/",
    ],
)
def test_numeric_spellings_are_caught_through_the_system_resolver(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="syncd only connects to public"):
        check_url(url, allow_private=False)


def test_system_resolver_turns_failures_into_a_clear_error() -> None:
    with pytest.raises(UnsafeUrl, match="cannot resolve"):
        system_resolver("no-such-host.invalid", 443)
