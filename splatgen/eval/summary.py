"""The headline numbers of an eval result, formatted (the `splatgen eval` table, report.html, compare).

Light on purpose (no torch): the report builder reads `eval.json` files through it.
"""

from __future__ import annotations

import math
from typing import Any


def format_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_rows(result: dict[str, Any]) -> dict[str, str]:
    """The headline numbers of one result, formatted (the table on screen and in report.html)."""
    views = result["views"]
    back = views.get("back_looks_front")
    return {
        "CLIP sim x100": format_number(result["clip_similarity"], 2),
        "A-LPIPS": format_number(result["a_lpips"], 4),
        "view warp error": format_number(result["view_consistency"]["error"], 4),
        "warp coverage": format_number(result["view_consistency"]["coverage"], 2),
        "view agreement": format_number(views["agreement"], 2),
        "back reads as front": "-" if back is None else f"{back:.0%}",
        "R-precision": format_number(result.get("r_precision", {}).get("value"), 2),
    }
