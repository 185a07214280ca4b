"""The Host allowlist: a request naming a host this server does not serve is answered 400.

On a laptop the service listens on ``127.0.0.1``; a web page whose DNS name is re-pointed at
127.0.0.1 (DNS rebinding) could otherwise make its visitors' browsers call it as if same-origin.
Such requests carry the page's own name in ``Host``, so only the loopback names are served by
default on a loopback bind (``MMSERVE_ALLOWED_HOSTS``, see :class:`service.settings.Settings`).
Ports are ignored. ``*`` allows any host; ``*.example.com`` a domain and its subdomains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import BadRequest
from service.refusals import refusal

FOREIGN_HOST: Final = (
    "the Host header names a host this server does not serve (see MMSERVE_ALLOWED_HOSTS)"
)


def host_name(header: bytes) -> str:
    """``Host`` without its port, lower-case: ``[::1]:8000`` -> ``[::1]``."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[: text.find("]") + 1] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class HostAllowlist:
    def __init__(self, allowed: Iterable[str]) -> None:
        names = [a.strip().lower() for a in allowed if a.strip()]
        self.any = "*" in names
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.com"

    def allows(self, header: bytes | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        name = host_name(header)
        return name in self.exact or (
            bool(self.suffixes) and (name.endswith(self.suffixes) or f".{name}" in self.suffixes)
        )


class TrustedHostMiddleware:
    def __init__(self, app: ASGIApp, allowlist: HostAllowlist) -> None:
        self.app = app
        self.allowlist = allowlist

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowlist.any:
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"host"), None)
        if self.allowlist.allows(header):
            await self.app(scope, receive, send)
            return
        response = refusal(scope, BadRequest(FOREIGN_HOST, field="Host"))
        await response(scope, receive, send)
