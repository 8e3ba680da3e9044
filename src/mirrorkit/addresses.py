"""The address guard: which addresses mirrorkit may not connect to, and a resolver that
refuses names resolving to them.

Fetching refuses private, loopback, link-local and other non-public addresses at every hop
unless ``[fetch] allow_private_addresses`` is set (see :mod:`mirrorkit.fetch`); ``verify``
of a mirror URL refuses redirects to them unless the URL it was given points there.  Kept
apart from fetch so that verify and status load it without the extraction stack.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from mirrorkit.errors import BlockedAddressError

_PRIVATE_HINT = "set [fetch] allow_private_addresses = true for origins on private networks"


def blocked_reason(address: str) -> str | None:
    """Why ``address`` may not be fetched from ("private", "loopback", ...), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.is_site_local:  # fec0::/10: deprecated, but still routed inside networks
            return "site-local"
        else:
            # 6to4 and Teredo addresses carry an IPv4 address that a relay may reach.
            embedded = [ip.sixtofour] if ip.sixtofour else list(ip.teredo or ())
            for v4 in embedded:
                kind = blocked_reason(str(v4))
                if kind:
                    return kind
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return kind
    # Shared address space (100.64/10) and the like are neither private nor public.
    return None if ip.is_global else "non-public"


def refused(address: str, allow_private: bool) -> str | None:
    """Why ``address`` is refused under ``[fetch] allow_private_addresses``, or None.

    Allowing private addresses lets mirrorkit read an origin on a private network; it
    never lets a source send it to link-local addresses or AWS's IPv6 metadata address:
    cloud metadata services live there (169.254.169.254), and a hostile sitemap or
    listing naming them would publish the machine's credentials as an article.
    """
    kind = blocked_reason(address)
    if kind is None or not allow_private:
        return kind
    try:
        metadata = ipaddress.ip_address(address.split("%", 1)[0]) in _METADATA
    except ValueError:
        metadata = False
    return kind if kind == "link-local" or metadata else None


_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})
_METADATA_HINT = ("link-local and cloud metadata addresses are never fetched, even with"
                  " allow_private_addresses")


def blocked(where: str, address: str, kind: str, *, resolved: bool,
             allow_private: bool = False) -> BlockedAddressError:
    verb = "resolves to" if resolved else "is"
    return BlockedAddressError(f"{verb} {kind} address {address}", where=where,
                               hint=_METADATA_HINT if allow_private else _PRIVATE_HINT)


class GuardedResolver(AbstractResolver):
    """A resolver that refuses names resolving to any address :func:`refused` names
    (but ``exempt``: a name the user asked for, such as the mirror ``verify`` was given)."""

    def __init__(self, allow_private: bool = False, exempt: str | None = None) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private
        self._exempt = exempt

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host == self._exempt:
            return results
        for result in results:
            kind = refused(result["host"], self._allow_private)
            if kind:
                raise blocked(host, result["host"], kind, resolved=True,
                               allow_private=self._allow_private)
        return results

    async def close(self) -> None:
        await self._inner.close()
