"""Prompt debiasing: PMI word removal and range adjustment on a controllable LM, and the real
transformers path on the tiny random masked LM (loaded from a folder exactly like a hub id)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # no model hub here: set before huggingface_hub is imported

import io
import json
import math
from collections.abc import Sequence

import pytest
import torch
from rich.console import Console

from splatgen.prompts import (
    VIEW_NAMES,
    DebiasConfig,
    EmptyPromptError,
    LanguageModelUnavailableError,
    MaskedLMViewScorer,
    PromptConfig,
    ViewRanges,
    ViewScorer,
    build_view_prompts,
    print_debias_table,
    prompt_words,
    remove_words,
    run_debias,
)
from splatgen.prompts.debias import THREESTUDIO_EQUIVALENT_THRESHOLD
from splatgen.prompts.tiny_lm import build_tiny_mlm, make_tiny_mlm, tiny_vocabulary
from splatgen.prompts.views import intervals_cover_circle_once


class TableViewScorer:
    """A controllable masked-LM stand-in: log P(v | text) = log_softmax(sum of the table rows of the words present).

    Words not in the table are neutral, so a text without table words gives the uniform distribution.
    """

    name = "table"

    def __init__(self, table: dict[str, dict[str, float]]):
        self.table = table
        self.calls: list[list[str]] = []

    def view_log_probabilities(self, prompts: Sequence[str]) -> torch.Tensor:  # [N, 4]
        self.calls.append(list(prompts))
        logits = torch.zeros(len(prompts), len(VIEW_NAMES), dtype=torch.float64)
        for row, prompt in enumerate(prompts):
            for word in prompt_words(prompt):
                for view, value in self.table.get(word.casefold(), {}).items():
                    logits[row, VIEW_NAMES.index(view)] += value
        return logits.log_softmax(dim=1)


SMILING_IMPLIES_NOT_BACK = {"smiling": {"back": -1.5}}


def test_table_scorer_implements_the_scoring_interface():
    assert isinstance(TableViewScorer({}), ViewScorer)


def test_smiling_is_removed_from_the_back_view_only():
    scorer = TableViewScorer(SMILING_IMPLIES_NOT_BACK)
    result = run_debias("a smiling dog", DebiasConfig(), scorer)
    view_prompts = result.view_prompts
    assert view_prompts.removed == {"front": (), "side": (), "back": ("smiling",), "overhead": ()}
    assert view_prompts["back"] == "a dog, back view"
    assert view_prompts["front"] == "a smiling dog, front view"
    assert view_prompts["overhead"] == "a smiling dog, overhead view"
    expected_back_pmi = -1.5 - math.log((3.0 + math.exp(-1.5)) / 4.0)  # log softmax - log(1/4)
    assert result.pmi["smiling"]["back"] == pytest.approx(expected_back_pmi)
    assert result.pmi["smiling"]["front"] == pytest.approx(-math.log((3.0 + math.exp(-1.5)) / 4.0))
    assert result.pmi["dog"] == pytest.approx({view: 0.0 for view in VIEW_NAMES})
    assert scorer.calls[0] == ["a smiling dog", "smiling dog", "a dog", "a smiling", "an object"]
    assert view_prompts.ranges == ViewRanges(front_max_azimuth=36.62, back_min_azimuth=110.0), (
        "docs/prompt-debiasing.md §4"
    )


def test_pmi_is_log_probability_difference():
    scorer = TableViewScorer({"smiling": {"front": 0.7, "back": -0.4}, "dog": {"side": 0.3}})
    result = run_debias("a smiling dog", DebiasConfig(), scorer)
    log_probabilities = scorer.view_log_probabilities(["a smiling dog", "a dog"])
    for index, view in enumerate(VIEW_NAMES):
        expected = float(log_probabilities[0, index] - log_probabilities[1, index])
        assert result.pmi["smiling"][view] == pytest.approx(expected)
    assert sum(result.view_probabilities.values()) == pytest.approx(1.0)


def test_threshold_and_protected_words_are_configurable():
    scorer = TableViewScorer({"smiling": {"back": -1.5}, "a": {"back": -2.0}})
    assert run_debias("a smiling dog", DebiasConfig(threshold=-5.0), scorer).view_prompts.removed["back"] == ()
    default = run_debias("a smiling dog", DebiasConfig(), scorer)
    assert default.view_prompts.removed["back"] == ("smiling",), "'a' is protected"
    unprotected = run_debias("a smiling dog", DebiasConfig(protected_words=()), scorer)
    assert unprotected.view_prompts.removed["back"] == ("a", "smiling")
    assert unprotected.view_prompts["back"] == "dog, back view"


def test_default_threshold_matches_threestudios_ratio_rule():
    assert THREESTUDIO_EQUIVALENT_THRESHOLD == pytest.approx(-0.1, abs=1e-3)
    assert DebiasConfig().threshold == -0.1
    for ratio in (0.8, 0.9, 0.91, 0.95, 1.0, 1.2):  # ratio = P(v | prompt) / P(v | prompt without w)
        threestudio_ratio = 1.0 / (0.5 / ratio + 0.5)  # P / lerp(P_without, P, 0.5)
        assert (threestudio_ratio < 0.95) == (math.log(ratio) < DebiasConfig().threshold)


def test_a_view_prompt_is_never_emptied():
    scorer = TableViewScorer({"dog": {"back": -3.0}})
    result = run_debias("a dog", DebiasConfig(), scorer)
    assert result.pmi["dog"]["back"] < -1.0
    assert result.view_prompts.removed["back"] == ()
    assert result.view_prompts["back"] == "a dog, back view"


def test_neutral_prompt_keeps_default_ranges_and_words():
    result = run_debias("a red box", DebiasConfig(), TableViewScorer(SMILING_IMPLIES_NOT_BACK))
    assert result.view_prompts.ranges == ViewRanges()
    assert all(removed == () for removed in result.view_prompts.removed.values())
    custom = DebiasConfig(ranges=ViewRanges(30.0, 150.0, 70.0))
    assert run_debias("a red box", custom, TableViewScorer({})).view_prompts.ranges == custom.ranges


def test_prompt_implying_a_front_narrows_the_front_arc():
    fronts = []
    for strength in (1.0, 2.0, 4.0, 12.0):
        scorer = TableViewScorer({"face": {"front": strength}})
        ranges = run_debias("a smiling face", DebiasConfig(), scorer).view_prompts.ranges
        assert intervals_cover_circle_once(ranges)
        fronts.append(ranges.front_max_azimuth)
    assert fronts == sorted(fronts, reverse=True)
    assert fronts[0] < 45.0 and fronts[-1] == DebiasConfig().range_rule.min_half_width


def test_prompt_implying_a_back_narrows_the_back_arc():
    scorer = TableViewScorer({"backpack": {"back": 2.0}})
    ranges = run_debias("a leather backpack", DebiasConfig(), scorer).view_prompts.ranges
    assert 180.0 - ranges.back_min_azimuth < 45.0
    assert ranges.front_max_azimuth > 45.0


def test_range_adjustment_uses_the_reference_prompt_and_can_be_disabled():
    scorer = TableViewScorer({"face": {"front": 2.0}})
    same_as_reference = run_debias("a face", DebiasConfig(reference_prompt="a face"), scorer)
    assert same_as_reference.view_prompts.ranges == ViewRanges()
    disabled = run_debias("a face", DebiasConfig(adjust_ranges=False), scorer)
    assert disabled.view_prompts.ranges == ViewRanges() and disabled.reference_probabilities is None
    assert scorer.calls[-1] == ["a face", "face", "a"], "no reference prompt probed"


def test_prompt_words_and_removal_handle_punctuation_and_non_ascii():
    assert prompt_words("a smiling, smiling dog's t-shirt!") == ["a", "smiling", "dog's", "t-shirt"]
    assert prompt_words("Un chien souriant (très mignon), sur une île 東京") == [
        "Un",
        "chien",
        "souriant",
        "très",
        "mignon",
        "sur",
        "une",
        "île",
        "東京",
    ]
    assert remove_words("a smiling, happy dog", {"smiling"}) == "a happy dog"
    assert remove_words("a dog, smiling", {"smiling"}) == "a dog"
    assert remove_words("a smiling, smiling dog!", {"smiling"}) == "a dog!"
    assert remove_words("a (smiling) dog", {"smiling"}) == "a dog"
    assert remove_words("un chien (très mignon), sur une île", {"mignon"}) == "un chien très sur une île"
    assert remove_words("a dog, très mignon", {"très"}) == "a dog, mignon"
    assert remove_words("a dog", set()) == "a dog"
    assert remove_words("dog", {"dog"}) == ""


def test_punctuated_non_ascii_prompt_end_to_end():
    scorer = TableViewScorer({"souriant": {"back": -2.0}, "très": {"back": 0.3}})
    result = run_debias("  Un chien souriant (très mignon), sur une île!  ", DebiasConfig(), scorer)
    assert result.prompt == "Un chien souriant (très mignon), sur une île!"
    assert result.view_prompts.removed["back"] == ("souriant",)
    assert result.view_prompts["back"] == "Un chien (très mignon), sur une île!, back view"
    assert "très" in result.pmi
    json.dumps(result.to_json(), ensure_ascii=False)


@pytest.mark.parametrize("prompt", ["", "  ", "\n"])
def test_empty_prompt_is_refused_before_loading_the_lm(prompt):
    with pytest.raises(EmptyPromptError, match="empty"):
        run_debias(prompt, DebiasConfig(lm="/nonexistent/never-loaded"))


def test_json_structure_is_exactly_as_specified():
    result = run_debias("a smiling dog", DebiasConfig(), TableViewScorer({"smiling": {"front": 1.0, "back": -1.5}}))
    data = json.loads(json.dumps(result.to_json()))
    assert list(data) == ["prompt", "views", "pmi"]
    assert data["prompt"] == "a smiling dog"
    assert list(data["views"]) == ["front", "side", "back", "overhead"]
    for view, entry in data["views"].items():
        assert list(entry) == ["prompt", "removed", "azimuth", "elevation"]
        assert isinstance(entry["prompt"], str) and view in entry["prompt"]
        assert all(isinstance(word, str) for word in entry["removed"])
        assert all(len(interval) == 2 and -180.0 <= interval[0] < interval[1] <= 180.0 for interval in entry["azimuth"])
        assert len(entry["elevation"]) == 2
    assert len(data["views"]["front"]["azimuth"]) == 1
    assert len(data["views"]["side"]["azimuth"]) == 2 and len(data["views"]["back"]["azimuth"]) == 2
    back = data["views"]["back"]["azimuth"]
    assert back[0][1] == 180.0 and back[1][0] == -180.0 and back[0][0] == -back[1][1]
    covered = sorted(interval for view in ("front", "side", "back") for interval in data["views"][view]["azimuth"])
    assert covered[0][0] == -180.0 and covered[-1][1] == 180.0
    assert all(previous[1] == current[0] for previous, current in zip(covered, covered[1:]))
    assert data["views"]["back"]["removed"] == ["smiling"]
    assert set(data["pmi"]) == {"a", "smiling", "dog"}
    assert all(list(values) == list(VIEW_NAMES) for values in data["pmi"].values())


def test_rich_table_shows_pmi_removed_words_prompts_and_ranges():
    result = run_debias("a smiling dog", DebiasConfig(), TableViewScorer(SMILING_IMPLIES_NOT_BACK))
    buffer = io.StringIO()
    print_debias_table(result, Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    back_pmi = f"{result.pmi['smiling']['back']:+.3f}"
    for expected in ("smiling", back_pmi, "a dog, back view", "a smiling dog, front view", "overhead", "∪"):
        assert expected in text


def test_build_view_prompts_with_and_without_the_lm():
    plain = build_view_prompts("a smiling dog", PromptConfig(lm="/nonexistent/never-loaded", debias=False))
    assert plain["back"] == "a smiling dog, back view" and plain.ranges == ViewRanges()
    debiased = build_view_prompts("a smiling dog", PromptConfig(), scorer=TableViewScorer(SMILING_IMPLIES_NOT_BACK))
    assert debiased["back"] == "a dog, back view"


def test_prompt_config_is_a_tyro_cli_with_documented_fields(capsys):
    import tyro

    config = tyro.cli(PromptConfig, args=["--no-debias", "--threshold", "-0.2", "--ranges.front-max-azimuth", "30"])
    assert config.debias is False and config.threshold == -0.2 and config.ranges.front_max_azimuth == 30.0
    with pytest.raises(SystemExit):
        tyro.cli(PromptConfig, args=["--help"])
    helptext = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for flag, documented in [
        ("--lm", "hub id or a local folder"),
        ("--template", "one [MASK]"),
        ("--threshold", "PMI"),
        ("--adjust-ranges", "azimuth arcs"),
        ("--reference-prompt", "Neutral prompt"),
        ("--no-debias", "loads no LM"),
        ("--range-rule.strength", "Exponent"),
        ("--ranges.front-max-azimuth", "Front view where"),
    ]:
        assert flag in helptext and documented in helptext


@pytest.mark.parametrize("lm", ["/nonexistent/folder/mlm", "splatgen-nonexistent-org/no-such-model"])
def test_missing_lm_gives_an_actionable_error(lm):
    with pytest.raises(LanguageModelUnavailableError) as caught:
        run_debias("a dog", DebiasConfig(lm=lm))
    message = str(caught.value)
    for expected in (lm, "--lm", "HF_HUB_OFFLINE", "local folder", "--no-debias"):
        assert expected in message


def test_folder_without_a_masked_lm_gives_an_actionable_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LanguageModelUnavailableError, match="--no-debias"):
        MaskedLMViewScorer.from_pretrained(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_mlm_folder(tmp_path_factory) -> str:
    return str(make_tiny_mlm(tmp_path_factory.mktemp("tiny") / "mlm"))


@pytest.fixture(scope="module")
def tiny_scorer(tiny_mlm_folder) -> MaskedLMViewScorer:
    return MaskedLMViewScorer.from_pretrained(tiny_mlm_folder)


def test_tiny_mlm_folder_has_the_hub_layout(tiny_mlm_folder, tiny_scorer):
    from transformers import BertForMaskedLM

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        os.listdir(tiny_mlm_folder)
    )
    assert isinstance(tiny_scorer.model, BertForMaskedLM)
    vocabulary = tiny_scorer.tokenizer.get_vocab()
    assert len(vocabulary) > 300
    for token in ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", *VIEW_NAMES, "depicting", "##ing"):
        assert token in vocabulary
    assert all(len(pieces) == 1 for pieces in tiny_scorer.view_piece_ids.values())
    assert len(tiny_scorer.tokenizer.tokenize("smiling")) > 1, "a prompt word that splits into pieces"


@pytest.mark.parametrize(
    "prompt",
    [
        "a smiling dog",
        "a colorful toucan with a large beak, front view",
        "Un chien souriant (très mignon), sur une île 東京!",
    ],
)
def test_tiny_mlm_runs_end_to_end(tiny_scorer, tiny_mlm_folder, prompt):
    result = run_debias(prompt, DebiasConfig(lm=tiny_mlm_folder), tiny_scorer)
    data = json.loads(json.dumps(result.to_json()))
    assert list(data) == ["prompt", "views", "pmi"]
    assert list(data["pmi"]) == prompt_words(result.prompt)
    assert all(math.isfinite(value) for values in data["pmi"].values() for value in values.values())
    assert sum(result.view_probabilities.values()) == pytest.approx(1.0)
    ranges = result.view_prompts.ranges
    ranges.validate()
    assert intervals_cover_circle_once(ranges)
    for view in VIEW_NAMES:
        entry = data["views"][view]
        assert entry["prompt"].endswith(f"{view} view")
        for word in entry["removed"]:
            assert word not in prompt_words(entry["prompt"].removesuffix(f", {view} view"))


def test_tiny_mlm_loaded_by_run_debias_from_the_folder(tiny_mlm_folder):
    result = run_debias("a smiling dog", DebiasConfig(lm=tiny_mlm_folder))
    assert result.lm == tiny_mlm_folder
    assert "smiling" in result.pmi, "a multi-piece prompt word is scored and kept or removed whole"


def test_view_probabilities_match_the_models_mask_distribution(tiny_scorer):
    tokenizer, model = tiny_scorer.tokenizer, tiny_scorer.model
    encoded = tokenizer(["This image is depicting a [MASK] view of a dog"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]  # [L, vocab]
    mask_index = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
    view_ids = [tokenizer.convert_tokens_to_ids(view) for view in VIEW_NAMES]
    expected = logits[mask_index].log_softmax(-1)[view_ids].double().log_softmax(-1)  # [4]
    torch.testing.assert_close(tiny_scorer.view_log_probabilities(["a dog"])[0], expected, atol=1e-5, rtol=0)


def test_multi_piece_view_word_is_scored_as_the_joint_of_its_pieces(tmp_path):
    vocabulary = [token for token in tiny_vocabulary(extra_words=("over",)) if token != "overhead"]
    scorer = MaskedLMViewScorer.from_pretrained(str(build_tiny_mlm(tmp_path / "split", vocabulary, seed=1)))
    tokenizer, model = scorer.tokenizer, scorer.model
    over, head = tokenizer.convert_tokens_to_ids(["over", "##head"])
    assert scorer.view_piece_ids["overhead"] == [over, head]

    encoded = tokenizer(["This image is depicting a [MASK] [MASK] view of a dog"], return_tensors="pt")
    first, second = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[:, 0].tolist()
    with torch.no_grad():
        first_log_probs = model(**encoded).logits[0, first].log_softmax(-1)
        filled = encoded["input_ids"].clone()
        filled[0, first] = over
        second_log_probs = (
            model(input_ids=filled, attention_mask=encoded["attention_mask"]).logits[0, second].log_softmax(-1)
        )
    overhead_joint = float(first_log_probs[over] + second_log_probs[head])

    single = tokenizer(["This image is depicting a [MASK] view of a dog"], return_tensors="pt")
    single_mask = int((single["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
    with torch.no_grad():
        single_log_probs = model(**single).logits[0, single_mask].log_softmax(-1)
    log_joints = torch.tensor(
        [float(single_log_probs[tokenizer.convert_tokens_to_ids(view)]) for view in VIEW_NAMES[:3]] + [overhead_joint],
        dtype=torch.float64,
    )
    torch.testing.assert_close(
        scorer.view_log_probabilities(["a dog"])[0], log_joints.log_softmax(-1), atol=1e-5, rtol=0
    )
    result = run_debias("a smiling dog", DebiasConfig(), scorer)
    assert intervals_cover_circle_once(result.view_prompts.ranges)


def test_view_word_missing_from_the_vocabulary_is_reported(tmp_path):
    vocabulary = [token for token in tiny_vocabulary() if token not in ("overhead", "##head", "##d")]
    folder = build_tiny_mlm(tmp_path / "no-overhead", vocabulary)
    with pytest.raises(LanguageModelUnavailableError, match="overhead"):
        MaskedLMViewScorer.from_pretrained(str(folder))


def test_probe_template_is_configurable_and_validated(tiny_scorer, tiny_mlm_folder):
    custom = DebiasConfig(lm=tiny_mlm_folder, template="a [MASK] view of {prompt}")
    result = run_debias("a smiling dog", custom)
    assert set(result.pmi) == {"a", "smiling", "dog"}
    for template in ("This image is depicting a view of {prompt}", "a [MASK] view of", "[MASK] [MASK] {prompt}"):
        with pytest.raises(ValueError, match="probe template"):
            run_debias("a dog", DebiasConfig(template=template), TableViewScorer({}))
