"""Browser viewers (viser): the live view of a training run and `splatgen view FILE.ply`.

- `LiveViewer(ViewerConfig(), run_dir)`: the training loop calls `publish(snapshot_factory)` and
  `wait_while_paused()` every step, and `close()` at the end (see `live.py`).
- `serve_ply(path, host, port)`: serve one PLY file until Ctrl-C (see `standalone.py`).

Both bind 127.0.0.1 unless told otherwise, use +y up, and open looking at the front (+z).
Their settings (`ViewerConfig`, `ViewCommand`) live in `config.py`, which imports no viser or
torch, so `--help` stays fast; everything here is imported on first use.
"""

from __future__ import annotations

from splatgen.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LiveViewer": "splatgen.viewer.live",
        "PlyViewer": "splatgen.viewer.standalone",
        "TrainingSnapshot": "splatgen.viewer.snapshot",
        "ViewCommand": "splatgen.viewer.config",
        "ViewerConfig": "splatgen.viewer.config",
        "serve_ply": "splatgen.viewer.standalone",
    },
)

__all__ = ["LiveViewer", "PlyViewer", "TrainingSnapshot", "ViewCommand", "ViewerConfig", "serve_ply"]
