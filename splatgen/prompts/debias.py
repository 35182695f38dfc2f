"""Prompt debiasing (D-SDS, Hong et al., arXiv 2303.15413): per-view word removal and range adjustment.

For the prompt and for the prompt with each word w deleted, a masked LM gives P(v | text) over
the four views (`masked_lm.py`). The pointwise mutual information

    PMI(w; v) = log P(v | prompt) - log P(v | prompt without w)

is negative when w pushes the view away. Words with PMI(w; v) < threshold are removed from view
v's prompt ("smiling" from the back view of "a smiling dog"). threestudio's `get_debiased_prompt`
removes w when P / (0.5 P_without + 0.5 P) < 0.95, which is PMI < log(0.95 / 1.05) = -0.1001;
the default threshold -0.1 reproduces its decisions (see `docs/prompt-debiasing.md`).

The same distribution, against a neutral reference prompt, moves the front/back boundaries
(`ranges.py`). `run_debias` returns a `DebiasResult`; its `view_prompts` is what the trainer uses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from splatgen.prompts.masked_lm import (
    DEFAULT_LM,
    DEFAULT_PROBE_TEMPLATE,
    MaskedLMViewScorer,
    ViewScorer,
    validate_probe_template,
)
from splatgen.prompts.perp_neg import PerpNegWeights
from splatgen.prompts.ranges import RangeRule, adjust_azimuth_ranges
from splatgen.prompts.views import (
    SUFFIX_TEMPLATE,
    VIEW_NAMES,
    ViewPrompts,
    ViewRanges,
    apply_view_template,
    normalize_prompt,
    plain_view_prompts,
    validate_view_template,
)

THREESTUDIO_EQUIVALENT_THRESHOLD = math.log(0.95 / 1.05)  # -0.1001
DEFAULT_PROTECTED_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "and",
    "or",
    "with",
    "without",
    "in",
    "on",
    "at",
    "to",
    "for",
    "from",
    "by",
    "as",
    "its",
    "his",
    "her",
    "their",
)

WORD_PATTERN = re.compile(r"\w+(?:['’\-]\w+)*")
SEPARATORS = ",;:"


@dataclass
class DebiasConfig:
    """Prompt debiasing with a masked language model (D-SDS) and the view prompts it produces."""

    lm: str = DEFAULT_LM
    """Masked LM: a Hugging Face hub id or a local folder saved with save_pretrained."""
    template: str = DEFAULT_PROBE_TEMPLATE
    """Probe sentence: one [MASK] where the view word goes, one {prompt}."""
    threshold: float = -0.1
    """Remove a word from a view's prompt when its PMI with that view is below this (log units; threestudio's 0.95 rule = -0.10)."""
    protected_words: tuple[str, ...] = DEFAULT_PROTECTED_WORDS
    """Words never removed (articles, prepositions); compared case-insensitively. Their PMI is still reported."""
    adjust_ranges: bool = True
    """Re-balance the front/side/back azimuth arcs from the LM's view distribution (a view the prompt implies gets a narrower arc)."""
    reference_prompt: str = "an object"
    """Neutral prompt probed with the same template: the range rule compares the prompt's view distribution to it."""
    range_rule: RangeRule = field(default_factory=RangeRule)
    """Strength, dead band and bounds of the azimuth-range adjustment."""
    view_template: str = SUFFIX_TEMPLATE
    """View prompt template with {prompt} and {view}: '{prompt}, {view} view' or '{view} view of {prompt}'."""
    ranges: ViewRanges = field(default_factory=ViewRanges)
    """Azimuth/elevation ranges before adjustment (threestudio's defaults: front 45, back 135, overhead 60)."""
    device: str = "cpu"
    """Device for the LM (it runs once per prompt; the CPU is fine)."""

    def validate(self) -> None:
        validate_probe_template(self.template)
        validate_view_template(self.view_template)
        self.ranges.validate()
        self.range_rule.validate()
        if not math.isfinite(self.threshold):
            raise ValueError(f"debias threshold must be finite, got {self.threshold}")
        if self.adjust_ranges:
            normalize_prompt(self.reference_prompt)


def prompt_words(prompt: str) -> list[str]:
    """The distinct words of a prompt in order of appearance; punctuation is not part of a word.

    A word is a run of letters/digits (any script) with inner apostrophes or hyphens ("dog's",
    "t-shirt"), so a word the LM splits into several pieces is still one word here.
    """
    seen: dict[str, None] = {}
    for match in WORD_PATTERN.finditer(prompt):
        seen.setdefault(match.group(0), None)
    return list(seen)


def remove_words(prompt: str, words: set[str] | frozenset[str]) -> str:
    """The prompt without every occurrence of `words`, with the punctuation they leave behind tidied.

    A whitespace token that loses all its letters drops its leftover punctuation ("a smiling, happy
    dog" minus "smiling" is "a happy dog"); tokens keeping other words keep their punctuation.
    """
    if not words:
        return prompt
    kept_tokens = []
    for token in prompt.split():
        stripped = WORD_PATTERN.sub(lambda match: "" if match.group(0) in words else match.group(0), token)
        if stripped == token or WORD_PATTERN.search(stripped):
            kept_tokens.append(stripped)
    text = _drop_unmatched_brackets(" ".join(kept_tokens))
    text = re.sub(r"\s+([,;:.!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    return text.strip(SEPARATORS + " ")


def _drop_unmatched_brackets(text: str) -> str:
    """Delete brackets left without a partner (a removed word took the other one with it)."""
    pairs = {")": "(", "]": "["}
    open_positions: list[int] = []
    unmatched: set[int] = set()
    for position, character in enumerate(text):
        if character in "([":
            open_positions.append(position)
        elif character in pairs:
            if open_positions and text[open_positions[-1]] == pairs[character]:
                open_positions.pop()
            else:
                unmatched.add(position)
    unmatched.update(open_positions)
    return " ".join("".join(c for i, c in enumerate(text) if i not in unmatched).split())


def _has_content_word(text: str, protected: set[str]) -> bool:
    return any(word.casefold() not in protected for word in prompt_words(text))


@dataclass(frozen=True)
class DebiasResult:
    """Everything the debias stage computed for one prompt."""

    prompt: str
    """The normalised user prompt."""
    lm: str
    """The masked LM that scored it."""
    words: tuple[str, ...]
    """The prompt's distinct words, in order."""
    pmi: dict[str, dict[str, float]]
    """word -> view -> PMI(w; v) = log P(v | prompt) - log P(v | prompt without w)."""
    threshold: float
    """Words with PMI below this were removed from that view (unless protected)."""
    view_probabilities: dict[str, float]
    """P(v | prompt) over the four views."""
    reference_probabilities: dict[str, float] | None
    """P(v | reference prompt) when the ranges were adjusted, else None."""
    view_prompts: ViewPrompts
    """Final per-view prompts, removed words and ranges (what the trainer uses)."""

    def to_json(self) -> dict[str, Any]:
        """`{"prompt", "views": {view: {"prompt", "removed", "azimuth", "elevation"}}, "pmi": {word: {view: value}}}`."""
        data = self.view_prompts.to_json()
        data["pmi"] = {
            word: {view: round(value, 4) for view, value in values.items()} for word, values in self.pmi.items()
        }
        return data


def run_debias(prompt: str, config: DebiasConfig = DebiasConfig(), scorer: ViewScorer | None = None) -> DebiasResult:
    """Score the prompt's words per view, remove the contradicting ones, adjust the ranges.

    `scorer` defaults to `MaskedLMViewScorer.from_pretrained(config.lm, config.template)`; pass one
    to reuse a loaded LM or to use a controllable stand-in.
    """
    prompt = normalize_prompt(prompt)
    config.validate()
    if scorer is None:
        scorer = MaskedLMViewScorer.from_pretrained(config.lm, config.template, device=config.device)
    words = prompt_words(prompt)
    texts = [prompt] + [remove_words(prompt, {word}) for word in words]
    if config.adjust_ranges:
        texts.append(normalize_prompt(config.reference_prompt))
    log_probabilities = scorer.view_log_probabilities(texts).double()  # [1 + W (+1), 4]
    prompt_log_probabilities = log_probabilities[0]  # [4]
    pmi = prompt_log_probabilities[None, :] - log_probabilities[1 : 1 + len(words)]  # [W, 4]

    protected = {word.casefold() for word in config.protected_words}
    removed: dict[str, tuple[str, ...]] = {}
    texts_by_view: dict[str, str] = {}
    for view_index, view in enumerate(VIEW_NAMES):
        candidates = tuple(
            word
            for word_index, word in enumerate(words)
            if float(pmi[word_index, view_index]) < config.threshold and word.casefold() not in protected
        )
        debiased = remove_words(prompt, set(candidates))
        if candidates and not _has_content_word(debiased, protected):
            candidates, debiased = (), prompt
        removed[view] = candidates
        texts_by_view[view] = apply_view_template(config.view_template, debiased, view)

    ranges = config.ranges
    reference_probabilities = None
    if config.adjust_ranges:
        reference = log_probabilities[-1].exp()  # [4]
        ranges = adjust_azimuth_ranges(prompt_log_probabilities.exp(), reference, config.ranges, config.range_rule)
        reference_probabilities = dict(zip(VIEW_NAMES, reference.tolist()))

    return DebiasResult(
        prompt=prompt,
        lm=getattr(scorer, "name", type(scorer).__name__),
        words=tuple(words),
        pmi={word: dict(zip(VIEW_NAMES, pmi[index].tolist())) for index, word in enumerate(words)},
        threshold=config.threshold,
        view_probabilities=dict(zip(VIEW_NAMES, prompt_log_probabilities.exp().tolist())),
        reference_probabilities=reference_probabilities,
        view_prompts=ViewPrompts(prompt=prompt, texts=texts_by_view, removed=removed, ranges=ranges),
    )


@dataclass
class PromptConfig(DebiasConfig):
    """View prompts for training, and the LM prompt debiasing (D-SDS) that edits them."""

    debias: bool = True
    """Run the LM prompt-debiasing stage; --no-debias uses the plain templates and ranges and loads no LM."""
    interpolate_views: bool = False
    """Blend the text embeddings of neighbouring view prompts by azimuth instead of picking one per camera."""
    perp_neg: bool = False
    """Perp-Neg (Armandpour et al. 2023): the other view prompts as negatives, perpendicular to the positive
    (threestudio's rule; positives blend neighbouring views by azimuth). Two more UNet conditions per view."""
    perp_neg_weights: PerpNegWeights = field(default_factory=PerpNegWeights)
    """Perp-Neg's negative weights f(r) = a exp(-b r) + c per region (threestudio's defaults)."""

    def validate(self) -> None:
        super().validate()
        self.perp_neg_weights.validate()


def build_view_prompts(
    prompt: str, config: PromptConfig = PromptConfig(), scorer: ViewScorer | None = None
) -> ViewPrompts:
    """The trainer's entry point: debiased view prompts, or with `config.debias` off plain ones without the LM."""
    if not config.debias:
        config.validate()
        return plain_view_prompts(prompt, config.view_template, config.ranges)
    return run_debias(prompt, config, scorer).view_prompts


def _format_intervals(intervals: list[tuple[float, float]]) -> str:
    return " ∪ ".join(f"[{lo:g}, {hi:g}]" for lo, hi in intervals)


def print_debias_table(result: DebiasResult, console=None) -> None:
    """Rich tables: PMI per word and view (removed words in red), then each view's final prompt and ranges."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    removed = result.view_prompts.removed
    pmi_table = Table(title=f"PMI(word; view) for {result.prompt!r}  (LM {result.lm}, threshold {result.threshold:g})")
    pmi_table.add_column("word")
    for view in VIEW_NAMES:
        pmi_table.add_column(view, justify="right")
    for word in result.words:
        cells = []
        for view in VIEW_NAMES:
            value = result.pmi[word][view]
            text = f"{value:+.3f}"
            cells.append(f"[bold red]{text} ✗[/]" if word in removed[view] else text)
        pmi_table.add_row(word, *cells)
    pmi_table.add_section()
    pmi_table.add_row("P(view | prompt)", *(f"{result.view_probabilities[view]:.3f}" for view in VIEW_NAMES))
    if result.reference_probabilities is not None:
        pmi_table.add_row(
            "P(view | reference)", *(f"{result.reference_probabilities[view]:.3f}" for view in VIEW_NAMES)
        )
    console.print(pmi_table)

    ranges = result.view_prompts.ranges
    views_table = Table(title="View prompts")
    for column in ("view", "prompt", "removed", "azimuth (deg)", "elevation (deg)"):
        views_table.add_column(column)
    for view in VIEW_NAMES:
        low, high = ranges.elevation_interval(view)
        views_table.add_row(
            view,
            result.view_prompts[view],
            ", ".join(removed[view]) or "-",
            _format_intervals(ranges.azimuth_intervals(view)),
            f"[{low:g}, {high:g}]",
        )
    console.print(views_table)
