"""View-dependent prompts and the LM prompt-debiasing stage (D-SDS, Hong et al., arXiv 2303.15413).

- `views.py`: view assignment per camera, templates, `ViewPrompts`, embedding blend weights.
- `masked_lm.py`: P(view | prompt) from a masked LM through a probe sentence.
- `debias.py`: per-word PMI, per-view word removal, `run_debias`, the `debias` command's output.
- `ranges.py`: the azimuth-range adjustment rule.
- `perp_neg.py`: Perp-Neg, the other view prompts as perpendicular negatives (per-camera plan, guidance).
- `tiny_lm.py`: a tiny random masked LM saved like a hub model, for tests.
See `docs/prompt-debiasing.md`.
"""

from __future__ import annotations

from splatgen.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DebiasConfig": "splatgen.prompts.debias",
        "DebiasResult": "splatgen.prompts.debias",
        "EmptyPromptError": "splatgen.prompts.views",
        "LanguageModelUnavailableError": "splatgen.prompts.masked_lm",
        "MaskedLMViewScorer": "splatgen.prompts.masked_lm",
        "PREFIX_TEMPLATE": "splatgen.prompts.views",
        "PerpNegPlan": "splatgen.prompts.perp_neg",
        "PerpNegWeights": "splatgen.prompts.perp_neg",
        "PromptConfig": "splatgen.prompts.debias",
        "PromptError": "splatgen.prompts.views",
        "RangeRule": "splatgen.prompts.ranges",
        "SUFFIX_TEMPLATE": "splatgen.prompts.views",
        "VIEW_NAMES": "splatgen.prompts.views",
        "ViewPrompts": "splatgen.prompts.views",
        "ViewRanges": "splatgen.prompts.views",
        "ViewScorer": "splatgen.prompts.masked_lm",
        "adjust_azimuth_ranges": "splatgen.prompts.ranges",
        "assign_views": "splatgen.prompts.views",
        "build_view_prompts": "splatgen.prompts.debias",
        "perp_neg_conditional": "splatgen.prompts.perp_neg",
        "perp_neg_plan": "splatgen.prompts.perp_neg",
        "plain_view_prompts": "splatgen.prompts.views",
        "print_debias_table": "splatgen.prompts.debias",
        "prompt_words": "splatgen.prompts.debias",
        "remove_words": "splatgen.prompts.debias",
        "run_debias": "splatgen.prompts.debias",
        "view_interpolation_weights": "splatgen.prompts.views",
        "view_names": "splatgen.prompts.views",
    },
)

__all__ = [
    "DebiasConfig",
    "DebiasResult",
    "EmptyPromptError",
    "LanguageModelUnavailableError",
    "MaskedLMViewScorer",
    "PREFIX_TEMPLATE",
    "PerpNegPlan",
    "PerpNegWeights",
    "PromptConfig",
    "PromptError",
    "RangeRule",
    "SUFFIX_TEMPLATE",
    "VIEW_NAMES",
    "ViewPrompts",
    "ViewRanges",
    "ViewScorer",
    "adjust_azimuth_ranges",
    "assign_views",
    "build_view_prompts",
    "perp_neg_conditional",
    "perp_neg_plan",
    "plain_view_prompts",
    "print_debias_table",
    "prompt_words",
    "remove_words",
    "run_debias",
    "view_interpolation_weights",
    "view_names",
]
