"""`splatgen view FILE`: show a 3DGS PLY, SuperSplat compressed PLY or .splat in the browser until Ctrl-C."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from splatgen.io import read_asset
from splatgen.scene.gaussians import SPLAT_KEYS, Gaussians
from splatgen.viewer.convert import framing_for
from splatgen.viewer.layers import SplatLayer
from splatgen.viewer.server import new_token, start_server, stop_server, url_for

if TYPE_CHECKING:
    import viser


class PlyViewer:
    """A running viewer of one PLY file: its `url`, the `gaussians` shown, and `close()`."""

    def __init__(self, server: viser.ViserServer, host: str, gaussians: Gaussians, token: str | None = None) -> None:
        self._server: viser.ViserServer | None = server
        self.gaussians = gaussians
        self.url = url_for(host, server.get_port(), token)

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        """Stop the server (idempotent); the port is free afterwards."""
        server, self._server = self._server, None
        if server is not None:
            stop_server(server)

    def __enter__(self) -> PlyViewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def describe(path: Path, gaussians: Gaussians) -> str:
    """The info panel's markdown: file, Gaussian count, SH degree, size on disk."""
    size_mb = os.path.getsize(path) / 1e6
    return f"**{path.name}**  \n{len(gaussians):,} Gaussians, SH degree {gaussians.sh_degree}, {size_mb:.1f} MB"


def serve_ply(
    path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    console: Console | None = None,
    block: bool = True,
    token: str | None = None,
) -> PlyViewer:
    """Load `path` with `read_asset` (a bad file raises `BadAssetFile` before any server starts) and serve it.

    `block=True` prints the URL and serves until Ctrl-C, then stops cleanly and returns the closed
    viewer; `block=False` returns the running viewer at once (call `close()`).
    """
    console = console if console is not None else Console()
    path = Path(path)
    gaussians = read_asset(path, finite=True)
    token = new_token() if token == "auto" else token
    server = start_server(host, port, console, framing_for(gaussians.means), exposed=f"see {path.name}", token=token)
    viewer = PlyViewer(server, host, gaussians, token)
    try:
        SplatLayer(server.scene).show({key: getattr(gaussians, key) for key in SPLAT_KEYS})
        server.gui.set_panel_label("splatgen view")
        server.gui.add_markdown(describe(path, gaussians))
    except BaseException:
        viewer.close()
        raise
    console.print(f"Viewing {escape(str(path))} at [link={viewer.url}]{viewer.url}[/link]")
    if block:
        serve_until_interrupted(viewer, console)
    return viewer


def serve_until_interrupted(viewer: PlyViewer, console: Console) -> None:
    """Sleep until Ctrl-C (or until the viewer is closed elsewhere), then stop without a traceback."""
    console.print("Press Ctrl-C to stop.")
    try:
        while viewer.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("Stopping the viewer.")
    finally:
        viewer.close()
