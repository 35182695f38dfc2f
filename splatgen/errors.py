"""User-facing errors: the CLI prints `str(error)` on one line, without a traceback.

Raise a `SplatgenError` (or a subclass) for anything a user can fix: a bad input file, an
unwritable output path, an unknown format. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class SplatgenError(Exception):
    """Base class; the message is a single line (newlines are folded into spaces)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class BadAssetFile(SplatgenError):
    """An input asset (PLY, .splat) is missing, unreadable, or not in the expected layout."""


class OutputError(SplatgenError):
    """An output file could not be written (the previous file, if any, is left as it was)."""


class UnsupportedFormat(SplatgenError):
    """A file suffix names a format splatgen does not read or write."""


def model_unavailable_message(
    what: str,
    model: str,
    reason: str,
    *,
    setting: str,
    hub_ids: str,
    local: str,
    download: str,
    otherwise: str = "",
) -> str:
    """The one line every model-loading failure ends in: what failed and why, then the ways out.

    what: the model's role ("Stable Diffusion model"); setting: the flag that names it; hub_ids: the
    accepted hub ids, as shown in brackets; local: what a local path must hold; download: the command
    that fetches it on a machine with network (it ends in `--local-dir DIR`); otherwise: a further way
    out, one sentence (e.g. a flag that runs without the model).
    """
    message = (
        f"{what} {model!r} is unavailable: {reason}. Set {setting} to a hub id ({hub_ids}) or to {local}: "
        f"`{download}` (`huggingface-cli download` in older huggingface_hub) on a machine with network, then "
        f"{setting} DIR. With HF_HUB_OFFLINE=1 only local paths and the hub cache are used (unset it to download; "
        f"set it to skip network retries)."
    )
    return f"{message} {otherwise}" if otherwise else message
