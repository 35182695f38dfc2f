"""The viewers' settings, kept apart from the viewers so `--help` reads them without importing viser or torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro
from rich.console import Console


@dataclass
class ViewerConfig:
    """The live browser viewer (viser)."""

    enabled: Annotated[bool, tyro.conf.arg(aliases=("--viewer",))] = True
    """Serve the run in a browser while it trains (--no-viewer turns it off)."""
    host: str = "127.0.0.1"
    """Address to listen on. Anything but loopback lets whoever can reach it watch and control the run."""
    port: int = 8080
    """Port to listen on; the next free one is used if it is taken (0 = any free port)."""
    update_hz: float = 2.0
    """Splat pushes per second (each push sends ~32 bytes per Gaussian to every open tab)."""
    token: str | None = None
    """Shared secret for remote use: only browsers that open the printed URL (?token=...) get in ("auto" = a random one)."""

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"viewer.port must be in 0..65535, got {self.port}")
        if not 0.0 < self.update_hz <= 60.0:
            raise ValueError(f"viewer.update_hz must be in (0, 60], got {self.update_hz}")


@dataclass
class ViewCommand:
    """Show a 3DGS asset (.ply of any SH degree, .compressed.ply, .splat) in the browser until Ctrl-C."""

    path: tyro.conf.Positional[Path]
    """The file to show (.ply, .compressed.ply or .splat)."""
    host: str = "127.0.0.1"
    """Address to listen on. Anything but loopback lets whoever can reach it see the asset."""
    port: int = 8080
    """Port to listen on; the next free one is used if it is taken (0 = any free port)."""
    token: str | None = None
    """Shared secret for remote use: only browsers that open the printed URL (?token=...) get in ("auto" = a random one)."""

    def run(self, console: Console | None = None) -> None:
        from splatgen.io import check_asset_path

        check_asset_path(self.path)  # a mistyped path is one line before viser and torch load
        from splatgen.viewer.standalone import serve_ply

        serve_ply(self.path, host=self.host, port=self.port, console=console, block=True, token=self.token)
