"""Browser viewers (viser): the live view of a training run and `splatgen view FILE.ply`.

- `LiveViewer(ViewerConfig(), run_dir)`: the training loop calls `publish(snapshot_factory)` and
  `wait_while_paused()` every step, and `close()` at the end (see `live.py`).
- `serve_ply(path, host, port)`: serve one PLY file until Ctrl-C (see `standalone.py`).

Both bind 127.0.0.1 unless told otherwise, use +y up, and open looking at the front (+z).
"""

from splatgen.viewer.live import LiveViewer, ViewerConfig
from splatgen.viewer.snapshot import TrainingSnapshot
from splatgen.viewer.standalone import PlyViewer, ViewCommand, serve_ply

__all__ = ["LiveViewer", "PlyViewer", "TrainingSnapshot", "ViewCommand", "ViewerConfig", "serve_ply"]
