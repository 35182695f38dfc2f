"""Scoring view words with a masked language model: P(view | prompt) through a probe sentence.

The probe (threestudio's `get_debiased_prompt`, used for D-SDS prompt debiasing, Hong et al.,
arXiv 2303.15413) is "This image is depicting a [MASK] view of {prompt}". The LM's distribution
at the mask, read at the four view words and renormalised over them, is P(v | prompt).

A view word that the tokenizer splits into k word pieces is scored in a probe with k masks, as
the joint probability of its pieces by the chain rule, filled left to right:
log P(p1 .. pk) = sum_j log P(p_j | probe with p1 .. p_{j-1} filled in, the rest masked).
Single-piece words (all four for `bert-base-uncased`) need one forward pass for all views.

Any object with `view_log_probabilities(prompts) -> [N, 4]` can stand in for the LM (tests use a
controllable table); `MaskedLMViewScorer` is the transformers implementation, loaded with
`AutoTokenizer` / `AutoModelForMaskedLM.from_pretrained` from a hub id or a local folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from splatgen.errors import SplatgenError, model_unavailable_message
from splatgen.io.weights import pickled_refusal
from splatgen.lazy import inference_mode
from splatgen.prompts.views import VIEW_NAMES, PromptError

if TYPE_CHECKING:
    import torch

DEFAULT_LM = "bert-base-uncased"
DEFAULT_PROBE_TEMPLATE = "This image is depicting a [MASK] view of {prompt}"
MASK_PLACEHOLDER = "[MASK]"
PROMPT_PLACEHOLDER = "{prompt}"


class LanguageModelUnavailableError(SplatgenError, RuntimeError):
    """The masked LM for prompt debiasing could not be loaded or cannot score the view words."""


@runtime_checkable
class ViewScorer(Protocol):
    def view_log_probabilities(self, prompts: Sequence[str]) -> torch.Tensor:
        """log P(v | prompt) [N, 4] over VIEW_NAMES for N prompts; each row's exp sums to 1."""
        ...


def validate_probe_template(template: str) -> None:
    """The probe must hold exactly one `[MASK]` (where the view word goes) and one `{prompt}`."""
    if template.count(MASK_PLACEHOLDER) != 1 or template.count(PROMPT_PLACEHOLDER) != 1:
        raise ValueError(
            f"probe template {template!r} must contain exactly one {MASK_PLACEHOLDER} and one {PROMPT_PLACEHOLDER}, "
            f"e.g. {DEFAULT_PROBE_TEMPLATE!r}"
        )


def lm_unavailable_message(lm: str, reason: str) -> str:
    """One line: what failed, then the ways out (--lm, HF_HUB_OFFLINE, a local folder, --no-debias)."""
    return model_unavailable_message(
        "Masked language model (prompt debiasing)",
        lm,
        reason,
        setting="--lm",
        hub_ids=f"default {DEFAULT_LM}",
        local="a local folder holding a masked LM saved with save_pretrained (config.json, weights, tokenizer files)",
        download=f"hf download {DEFAULT_LM} --local-dir DIR",
        otherwise="Or skip prompt debiasing with --no-debias (plain view prompts, default ranges).",
    )


class MaskedLMViewScorer:
    """P(view | prompt) from a transformers masked LM through the probe template."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        template: str = DEFAULT_PROBE_TEMPLATE,
        name: str = "masked LM",
        batch_size: int = 32,
    ):
        validate_probe_template(template)
        if tokenizer.mask_token_id is None:
            raise LanguageModelUnavailableError(lm_unavailable_message(name, "its tokenizer has no mask token"))
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.name = name
        self.batch_size = batch_size
        self.max_length = int(getattr(model.config, "max_position_embeddings", 512))
        self.view_piece_ids = {view: self._word_piece_ids(view) for view in VIEW_NAMES}

    @classmethod
    def from_pretrained(
        cls, lm: str = DEFAULT_LM, template: str = DEFAULT_PROBE_TEMPLATE, device: str | torch.device = "cpu"
    ) -> MaskedLMViewScorer:
        """Load tokenizer and model from a hub id or a local folder (the same code path for both)."""
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        validate_probe_template(template)
        folder = Path(lm).expanduser()
        looks_like_a_path = lm.startswith(("/", ".", "~")) or lm.count("/") > 1 or "\\" in lm
        if looks_like_a_path and not folder.is_dir():
            raise LanguageModelUnavailableError(lm_unavailable_message(lm, f"there is no folder {folder}"))
        source = str(folder) if folder.is_dir() else lm
        refusal = pickled_refusal(folder) if folder.is_dir() else None
        if refusal is not None:
            raise LanguageModelUnavailableError(lm_unavailable_message(lm, refusal))
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForMaskedLM.from_pretrained(source, use_safetensors=True)  # never unpickle weights
        except (OSError, ValueError, KeyError, ImportError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise LanguageModelUnavailableError(lm_unavailable_message(lm, reason)) from error
        return cls(model.to(device), tokenizer, template, name=lm)

    def _word_piece_ids(self, word: str) -> list[int]:
        """Token ids of `word` as it appears after the probe's text before the mask."""
        prefix = self.template.split(MASK_PLACEHOLDER)[0].rstrip()
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        full_ids = self.tokenizer(f"{prefix} {word}", add_special_tokens=False)["input_ids"]
        if full_ids[: len(prefix_ids)] == prefix_ids and len(full_ids) > len(prefix_ids):
            piece_ids = full_ids[len(prefix_ids) :]
        else:
            piece_ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not piece_ids or self.tokenizer.unk_token_id in piece_ids:
            raise LanguageModelUnavailableError(
                lm_unavailable_message(self.name, f"its vocabulary cannot spell the view word {word!r}")
            )
        return piece_ids

    def _probe_text(self, prompt: str, num_masks: int) -> str:
        for special in self.tokenizer.all_special_tokens:
            prompt = prompt.replace(special, " ")
        masks = " ".join([self.tokenizer.mask_token] * num_masks)
        return self.template.replace(PROMPT_PLACEHOLDER, " ".join(prompt.split())).replace(MASK_PLACEHOLDER, masks)

    @inference_mode
    def _mask_log_softmax(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_positions: torch.Tensor
    ) -> torch.Tensor:
        """log-softmax over the vocabulary at the given positions: [N, k, vocab] for positions [N, k]."""
        import torch

        device = next(self.model.parameters()).device
        outputs = []
        for start in range(0, input_ids.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            logits = self.model(
                input_ids=input_ids[rows].to(device), attention_mask=attention_mask[rows].to(device)
            ).logits  # [n, L, vocab]
            positions = mask_positions[rows].to(device)  # [n, k]
            picked = torch.gather(logits, 1, positions[..., None].expand(-1, -1, logits.shape[-1]))  # [n, k, vocab]
            outputs.append(picked.float().log_softmax(-1).cpu())
        return torch.cat(outputs)

    def _piece_log_joints(self, prompts: Sequence[str], num_pieces: int, views: list[str]) -> dict[str, torch.Tensor]:
        """log P(pieces of v) [N] for the views whose words have `num_pieces` pieces, one probe with that many masks."""
        import torch

        texts = [self._probe_text(prompt, num_pieces) for prompt in prompts]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]  # [N, L]
        is_mask = input_ids == self.tokenizer.mask_token_id  # [N, L]
        if not bool((is_mask.sum(dim=1) == num_pieces).all()):
            raise PromptError(
                f"the prompt is too long for the debiasing LM ({self.max_length} tokens with the probe): shorten it"
            )
        mask_positions = is_mask.nonzero()[:, 1].view(len(texts), num_pieces)  # [N, k], left to right
        rows = torch.arange(len(texts))
        all_masked = self._mask_log_softmax(input_ids, attention_mask, mask_positions)  # [N, k, vocab]
        log_joints = {}
        for view in views:
            pieces = self.view_piece_ids[view]
            total = all_masked[:, 0, pieces[0]].clone()  # [N]
            filled = input_ids.clone()
            for step in range(1, num_pieces):
                filled[rows, mask_positions[:, step - 1]] = pieces[step - 1]
                step_log_probs = self._mask_log_softmax(filled, attention_mask, mask_positions[:, step : step + 1])
                total += step_log_probs[:, 0, pieces[step]]
            log_joints[view] = total
        return log_joints

    def view_log_probabilities(self, prompts: Sequence[str]) -> torch.Tensor:  # [N, 4]
        """log P(v | prompt) over VIEW_NAMES, renormalised over the four view words."""
        import torch

        views_by_piece_count: dict[int, list[str]] = {}
        for view in VIEW_NAMES:
            views_by_piece_count.setdefault(len(self.view_piece_ids[view]), []).append(view)
        log_joints: dict[str, torch.Tensor] = {}
        for num_pieces, views in views_by_piece_count.items():
            log_joints.update(self._piece_log_joints(prompts, num_pieces, views))
        stacked = torch.stack([log_joints[view] for view in VIEW_NAMES], dim=1)  # [N, 4]
        return stacked.double().log_softmax(dim=1)
