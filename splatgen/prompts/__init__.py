"""View-dependent prompts and the LM prompt-debiasing stage (D-SDS, Hong et al., arXiv 2303.15413).

- `views.py`: view assignment per camera, templates, `ViewPrompts`, embedding blend weights.
- `masked_lm.py`: P(view | prompt) from a masked LM through a probe sentence.
- `debias.py`: per-word PMI, per-view word removal, `run_debias`, the `debias` command's output.
- `ranges.py`: the azimuth-range adjustment rule.
- `perp_neg.py`: Perp-Neg, the other view prompts as perpendicular negatives (per-camera plan, guidance).
- `tiny_lm.py`: a tiny random masked LM saved like a hub model, for tests.
See `docs/prompt-debiasing.md`.
"""

from splatgen.prompts.debias import (
    DebiasConfig,
    DebiasResult,
    PromptConfig,
    build_view_prompts,
    print_debias_table,
    prompt_words,
    remove_words,
    run_debias,
)
from splatgen.prompts.masked_lm import LanguageModelUnavailableError, MaskedLMViewScorer, ViewScorer
from splatgen.prompts.perp_neg import PerpNegPlan, PerpNegWeights, perp_neg_conditional, perp_neg_plan
from splatgen.prompts.ranges import RangeRule, adjust_azimuth_ranges
from splatgen.prompts.views import (
    PREFIX_TEMPLATE,
    SUFFIX_TEMPLATE,
    VIEW_NAMES,
    EmptyPromptError,
    PromptError,
    ViewPrompts,
    ViewRanges,
    assign_views,
    plain_view_prompts,
    view_interpolation_weights,
    view_names,
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
