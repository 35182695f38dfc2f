"""Who may talk to a viewer: same-origin pages on this machine, and holders of the shared token.

Browsers let any page open a websocket to `127.0.0.1:PORT`; they only say who is asking in the
`Origin` header (RFC 6455, section 10.2). viser accepts every handshake, so a page on another site
that the user has open could watch the run, pause it and write PLY files. `HandshakeGuard` runs
first on every HTTP request and websocket handshake of the server (the `process_request` hook of
`websockets.asyncio.server.serve`, which viser calls; see `guarded_serve`):

- a websocket handshake with an `Origin` must come from the viewer's own page: the Origin is
  `http(s)://<Host header>`, and (without a token) that host is an IP address or `localhost`,
  so a DNS-rebound name (`evil.example` resolving to 127.0.0.1) is refused too;
- with a token (`--viewer.token`, `splatgen view --token`), every request must carry it: the URL's
  `?token=` (the printed URL has it), or the cookie the first page load sets, so the page's own
  websocket and asset requests carry it without viser's client knowing.

A refused request gets HTTP 403 and a one-line reason; nothing reaches viser.
"""

from __future__ import annotations

import contextlib
import hmac
import http
import ipaddress
import threading
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE = "splatgen_viewer_token"
_PATCH_LOCK = threading.Lock()


def _is_address_or_localhost(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return True


class HandshakeGuard:
    """Decides, per request, whether it may reach viser (`refusal(request)` is None) or gets a 403."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or None
        self.refused = 0  # how many requests were turned away (tests and the console read it)

    def _token_in(self, request: Any) -> str | None:
        query = parse_qs(urlsplit(request.path).query).get("token")
        if query:
            return query[0]
        cookie = SimpleCookie()
        with contextlib.suppress(Exception):
            cookie.load(request.headers.get("Cookie", ""))
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel is not None else None

    def refusal(self, request: Any) -> str | None:
        """Why `request` (a websockets `Request`) is refused, or None when it may pass."""
        headers = request.headers
        if self.token is not None:
            offered = self._token_in(request)
            if offered is None or not hmac.compare_digest(offered.encode(), self.token.encode()):
                return "this viewer needs its token: open the URL printed by splatgen (it ends in ?token=...)"
        origin = headers.get("Origin")
        if headers.get("Upgrade", "").lower() != "websocket" or origin is None:
            return None  # plain page and asset loads; a non-browser client sends no Origin
        host = headers.get("Host", "")
        if origin.rstrip("/").lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            return f"websocket from {origin} refused: only the viewer's own page may connect"
        hostname = urlsplit(f"http://{host}").hostname or ""
        if self.token is None and not _is_address_or_localhost(hostname):
            return f"websocket for host {hostname!r} refused: open the viewer by IP address, or use a token"
        return None

    def wrap(self, process_request: Any) -> Any:
        """viser's own `process_request` (or None), run only for requests that pass."""

        def guarded(connection: Any, request: Any) -> Any:
            from websockets.datastructures import Headers
            from websockets.http11 import Response

            reason = self.refusal(request)
            if reason is not None:
                self.refused += 1
                body = (reason + "\n").encode()
                headers = Headers({"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))})
                return Response(http.HTTPStatus.FORBIDDEN, "Forbidden", headers, body)
            response = process_request(connection, request) if process_request is not None else None
            offered = parse_qs(urlsplit(request.path).query).get("token")
            if self.token is not None and offered and response is not None and hasattr(response, "headers"):
                response.headers["Set-Cookie"] = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            return response

        return guarded


@contextlib.contextmanager
def guarded_serve(guard: HandshakeGuard) -> Iterator[None]:
    """While active, every `websockets.asyncio.server.serve` call (viser's, on start) gets `guard` first.

    viser binds before `ViserServer(...)` returns, so wrapping that constructor is enough; the
    lock keeps two viewers starting at once from seeing each other's guard.
    """
    import websockets.asyncio.server as websockets_server

    with _PATCH_LOCK:
        original = websockets_server.serve

        def serve(*args: Any, process_request: Any = None, **kwargs: Any) -> Any:
            return original(*args, process_request=guard.wrap(process_request), **kwargs)

        websockets_server.serve = serve
        try:
            yield
        finally:
            websockets_server.serve = original
