"""Which clone URLs a registration may use.

The service fetches from these URLs on its own network, so a URL is a way to
make it reach things: only https on the allowed hosts; loopback, private and
link-local addresses, `file://` and embedded credentials are refused. The
insecure sandbox switch admits plain-HTTP loopback sources for the demo only.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_PATH = re.compile(r"^/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?(?:\.git)?/?$")
#: GitLab projects sit in groups and subgroups: `/group/sub/project.git`.
_NESTED_PATH = re.compile(r"^/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){1,20}?(?:\.git)?/?$")


class UnsafeURL(ValueError):
    """The clone URL is refused; the message says why."""


def _is_ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_clone_url(
    url: str, allowed_hosts: tuple[str, ...], *, insecure_sandbox: bool = False, nested: bool = False
) -> str:
    """Return the URL if it is acceptable, else raise UnsafeURL. `nested`: the path may have
    subgroups (GitLab)."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeURL("clone URL contains whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("clone URL must not carry credentials")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeURL(f"clone URL {url!r} has no host; use https://<host>/<owner>/<repo>.git")
    address = _is_ip_literal(host)
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if insecure_sandbox and loopback and scheme in ("http", "https"):
        return url
    if scheme != "https":
        raise UnsafeURL(f"clone URL must use https, not {scheme or 'no scheme'}")
    if address is not None or loopback:
        raise UnsafeURL("clone URL must name an allowed host, not an IP address or localhost")
    if host not in allowed_hosts:
        raise UnsafeURL(f"clone URL host {host} is not allowed; allowed: {', '.join(allowed_hosts)}")
    if parts.port not in (None, 443):
        raise UnsafeURL("clone URL must use the default https port")
    if parts.query or parts.fragment or not (_NESTED_PATH if nested else _PATH).fullmatch(parts.path):
        shape = "<group>/[<subgroup>/...]<project>" if nested else "<owner>/<repo>"
        raise UnsafeURL(f"clone URL must look like https://<host>/{shape}.git")
    return url


def webhook_url(public_url: str, provider: str) -> str:
    """Where a source's webhook for a registration of `provider` points (GitHub's path is the
    one its hooks had before there were other providers)."""
    path = "/webhooks/github" if provider == "github" else f"/webhooks/source/{provider}"
    return public_url.rstrip("/") + path
