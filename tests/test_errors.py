"""Every model-loading failure reads the same way: `<model> '<id>' is unavailable: <reason>.` then the
ways out (its flag, a hub id, a local path, the download command, HF_HUB_OFFLINE), on one line."""

from __future__ import annotations

import pytest

from splatgen.errors import SplatgenError
from splatgen.eval.clip import CLIP_SETTING, clip_unavailable
from splatgen.prior.loading import MODEL_SETTING, unavailable
from splatgen.prior.mvdream import UNET_SETTING, unet_unavailable
from splatgen.prompts.masked_lm import lm_unavailable_message
from splatgen.scene.shap_e import shap_e_unavailable

REASON = "it is not in the local hub cache"
BUILDERS = [  # (name, build(model, reason) -> message, its flag)
    ("stable diffusion", lambda model, reason: str(unavailable(model, reason)), MODEL_SETTING),
    ("mvdream unet", lambda model, reason: str(unet_unavailable(model, reason)), UNET_SETTING),
    ("clip", lambda model, reason: str(clip_unavailable(model, reason)), CLIP_SETTING),
    ("masked lm", lm_unavailable_message, "--lm"),
    ("shap-e", lambda model, reason: str(shap_e_unavailable(model, reason)), "--init.model"),
]


@pytest.mark.parametrize(("name", "build", "setting"), BUILDERS, ids=[name for name, _, _ in BUILDERS])
def test_every_model_unavailable_message_has_the_same_ways_out(name, build, setting):
    message = build("some-org/some-model", REASON)
    assert "\n" not in message
    assert f"'some-org/some-model' is unavailable: {REASON}. Set {setting} to a hub id (" in message
    assert f"then {setting} DIR." in message
    for needed in ("hf download ", "--local-dir DIR", "on a machine with network", "HF_HUB_OFFLINE=1"):
        assert needed in message, (name, needed)


def test_the_error_types_are_user_errors():
    for error in (unavailable("m", REASON), unet_unavailable("m", REASON), clip_unavailable("m", REASON)):
        assert isinstance(error, SplatgenError) and str(error).count(REASON) == 1
    assert str(shap_e_unavailable("m", REASON)).endswith("Or start from a random ball with --init ball.")
    assert lm_unavailable_message("m", REASON).endswith(
        "Or skip prompt debiasing with --no-debias (plain view prompts, default ranges)."
    )
