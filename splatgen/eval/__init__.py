"""Measuring what a run made: `splatgen eval RUN_OR_PLY [...] [--prompt TEXT] [--json]`.

Contract:
- Input: run folders (PLY, prompt and view ranges read from them) or PLYs with `--prompt`
  (`targets.resolve_target`, torch-free, so a wrong input is refused before anything loads).
- Output: one JSON-ready dict per asset (`run.evaluate`), written to `RUN/eval.json` for run
  folders, shown as a rich table (or printed as one JSON object with `--json`).
- Metrics (exact definitions in docs/evaluation.md and in each module's docstring):
  CLIP similarity x100 and CLIP R-precision (`clip.py`), A-LPIPS (`lpips.py`), a model-free
  depth-warp view-consistency error (`consistency.py`), per-view CLIP labels against
  front/side/back view prompts (`clip.py`). All read one rendered turntable (`orbit.py`).
- Models: CLIP through transformers `CLIPModel` (hub id or local folder, safetensors only;
  `tiny-random` builds a tiny random one for tests); LPIPS v0.1 heads ship with splatgen, the
  ImageNet backbone comes from torchvision's checkpoint file. A missing model is one
  `SplatgenError` line; the command checks the CLIP's availability first
  (`splatgen.train.availability.check_available`: one hub probe, no retry loop). Tiny-model
  numbers mean nothing.

Imports flow one way: eval -> {render, scene, prompts, io, prior.loading}; nothing in train imports eval.
"""

from splatgen.eval.settings import DEFAULT_CLIP, EvalInputError, EvalSettings

__all__ = ["DEFAULT_CLIP", "EvalInputError", "EvalSettings"]
