"""Starting a viser server the splatgen way: loopback by default, +y up, a front-facing camera."""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import logging
import secrets
import socket

import viser
from rich.console import Console
from rich.markup import escape

from splatgen.errors import SplatgenError
from splatgen.viewer.convert import Framing
from splatgen.viewer.guard import HandshakeGuard, guarded_serve

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class DropAbortedHandshakes(logging.Filter):
    """Browsers open spare connections and close them unused; websockets logs each as an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "opening handshake failed"


def quiet_aborted_handshakes() -> None:
    """Keep those tracebacks out of the training console (other websockets errors still show)."""
    server_logger = logging.getLogger("websockets.server")
    if not any(isinstance(existing, DropAbortedHandshakes) for existing in server_logger.filters):
        server_logger.addFilter(DropAbortedHandshakes())


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewerUnavailable(SplatgenError):
    """The viewer cannot listen where it was asked to (bad port, unknown host, no permission)."""


def url_for(host: str, port: int, token: str | None = None) -> str:
    """The address to open in a browser; a wildcard bind is reachable on 127.0.0.1 too."""
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}" + (f"/?token={token}" if token else "")


def new_token() -> str:
    """A fresh shared secret for `--viewer.token auto` (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def check_listen(host: str, port: int) -> None:
    """Refuse, with one line, what viser's server thread would die on (and then wait for ever)."""
    if not 0 <= port <= 65535:
        raise ViewerUnavailable(f"--port must be in 0..65535, got {port}")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as error:
        raise ViewerUnavailable(f"cannot listen on {host!r}: {getattr(error, 'strerror', None) or error}") from error
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:  # a taken port is fine: viser moves to the next free one
                raise ViewerUnavailable(f"cannot listen on {host}:{port}: {error.strerror or error}") from error


def exposure_warning(host: str, port: int, exposed: str, token: str | None = None) -> str:
    """The warning printed when the viewer listens beyond this machine; `exposed` says what others get."""
    if token:
        return f"Note: the viewer listens on {host}:{port}; only browsers given its URL (with the token) can {exposed}."
    return (
        f"Warning: the viewer listens on {host}:{port}. Anyone who can reach this address can {exposed}. "
        "Bind 127.0.0.1 to keep it local, or add a token (--viewer.token auto)."
    )


def start_server(
    host: str, port: int, console: Console, framing: Framing, exposed: str, token: str | None = None
) -> viser.ViserServer:
    """Start a viser server (+y up, initial camera `framing`), warning when `host` is not loopback.

    viser moves to the next free port when `port` is taken (port 0 picks any free port); read the
    bound port with `server.get_port()`. Every request passes a `HandshakeGuard` first (foreign
    websocket Origins refused; with `token`, requests without it refused).
    """
    check_listen(host, port)
    if not is_loopback(host):
        console.print(f"[bold yellow]{escape(exposure_warning(host, port, exposed, token))}[/]")
    quiet_aborted_handshakes()
    with contextlib.redirect_stdout(io.StringIO()), guarded_serve(HandshakeGuard(token)):
        server = viser.ViserServer(host=host, port=port, verbose=False)  # viser prints a banner; we print one URL
    if port != 0 and server.get_port() != port:
        console.print(f"Port {port} is taken; the viewer uses port {server.get_port()} instead.")
    server.scene.set_up_direction("+y")
    aim_initial_camera(server, framing)
    return server


def aim_initial_camera(server: viser.ViserServer, framing: Framing) -> None:
    """Set where new browser tabs (and "Reset View") start looking from."""
    server.initial_camera.fov = framing.fov
    server.initial_camera.look_at = framing.look_at
    server.initial_camera.position = framing.position
    server.initial_camera.up = (0.0, 1.0, 0.0)


def stop_server(server: viser.ViserServer) -> None:
    """Stop the server; viser joins its thread, so the port is free when this returns."""
    with contextlib.redirect_stdout(io.StringIO()):  # silences "(viser) Server stopped"
        server.stop()
