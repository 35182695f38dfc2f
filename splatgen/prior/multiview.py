"""The pieces that turn a stock Stable Diffusion 2.1-base UNet into MVDream's multi-view UNet.

MVDream (Shi et al. 2023, "MVDream: Multi-view Diffusion for 3D Generation", arXiv 2308.16512;
code `bytedance/MVDream@618f844`) is SD 2.1-base with two changes, both expressible on
`diffusers.UNet2DConditionModel`:

1. A camera embedding `Linear(16, 1280) -> SiLU -> Linear(1280, 1280)` added to the time
   embedding (`openaimodel.py`, `camera_embed`). Here: the UNet's `class_embedding` with
   `class_embed_type="projection"` (a `TimestepEmbedding(16, 1280)`), fed through `class_labels`.
2. Self-attention over the 4 views of a group jointly: `(b f) l c -> b (f l) c` before `attn1`
   and back after (`attention.py`, `BasicTransformerBlock3D`). Here: `CrossViewAttnProcessor`
   on every `attn1` (cross-attention `attn2` stays per view).

Its weights keep the original LDM parameter names (`input_blocks.1.1.transformer_blocks.0...`,
`camera_embed.0.weight`); `ldm_to_diffusers_unet` maps them with diffusers' own single-file
converter (`convert_ldm_unet_checkpoint`) plus the camera keys, and checks that every key is
used. `diffusers_to_ldm_unet` is the inverse, used to write tiny test checkpoints in LDM names.

The camera input (`mvdream_camera_conditions`) is MVDream's camera-to-world matrix in its z-up
("Blender") world with the translation normalised to unit length, flattened row-major
(`camera_utils.py`: `get_camera`, `convert_opengl_to_blender`, `normalize_camera`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from splatgen.scene.cameras import CameraBatch, rigid_inverse

if TYPE_CHECKING:
    import torch
    from diffusers.models.attention_processor import Attention

LDM_UNET_KEY = "model.diffusion_model."  # the UNet's prefix in LDM checkpoints (diffusers' single_file_utils)
VIEWS_PER_GROUP = 4  # MVDream was trained on groups of 4 views 90 degrees apart
CAMERA_CONDITION_SIZE = 16  # a flattened 4x4 camera-to-world matrix
CAMERA_EMBED_KEYS = {  # diffusers name -> MVDream's LDM name
    "class_embedding.linear_1.weight": "camera_embed.0.weight",
    "class_embedding.linear_1.bias": "camera_embed.0.bias",
    "class_embedding.linear_2.weight": "camera_embed.2.weight",
    "class_embedding.linear_2.bias": "camera_embed.2.bias",
}


class UnmappedWeights(ValueError):
    """A checkpoint's keys do not match the multi-view UNet (missing, left over or misshapen)."""


class CrossViewAttnProcessor:
    """Self-attention jointly over the `num_views` views of each group (MVDream's 3D self-attention).

    The UNet batch [(b f), l, c] is regrouped to [b, (f l), c], attended with diffusers' stock
    SDPA processor, and split back, so each token attends to every token of its group's views.
    With `num_views=1` this is the stock processor exactly. Groups must be contiguous in the batch.
    """

    def __init__(self, num_views: int = VIEWS_PER_GROUP):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.num_views = num_views
        self.stock = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,  # [(b f), l, c]
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:  # [(b f), l, c]
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("CrossViewAttnProcessor serves unmasked self-attention (attn1) on [B, L, C] tokens only")
        batch, tokens, channels = hidden_states.shape
        if batch % self.num_views != 0:
            raise ValueError(f"a batch of {batch} views is not made of whole groups of {self.num_views}")
        grouped = hidden_states.reshape(batch // self.num_views, self.num_views * tokens, channels)  # [b, (f l), c]
        attended = self.stock(attn, grouped, temb=temb)
        return attended.reshape(batch, tokens, channels)


def install_cross_view_attention(unet: torch.nn.Module, num_views: int = VIEWS_PER_GROUP) -> int:
    """Put a `CrossViewAttnProcessor` on every self-attention (`attn1`); returns how many were replaced."""
    processors = {}
    for name, processor in unet.attn_processors.items():
        processors[name] = CrossViewAttnProcessor(num_views) if name.endswith("attn1.processor") else processor
    replaced = sum(name.endswith("attn1.processor") for name in processors)
    unet.set_attn_processor(processors)  # consumes the dict
    return replaced


def mvdream_camera_conditions(cameras: CameraBatch) -> torch.Tensor:  # [C, 16]
    """MVDream's camera input from splatgen cameras (OpenCV world-to-camera, +y up, front on +z).

    c2w = inv(viewmat) @ diag(1, -1, -1, 1) (OpenCV -> OpenGL camera axes), then the y-up -> z-up
    change of basis [[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]] on the left
    (MVDream's `convert_opengl_to_blender`), the translation scaled to unit length (its
    `normalize_camera`, with its 1e-8), flattened row-major. Both changes of basis are sign flips
    and a row swap, done as such on the cameras' device (no constant copied from the host, and the
    closed-form rigid inverse reads nothing back).
    """
    import torch

    c2w = rigid_inverse(cameras.viewmats.double())  # [C, 4, 4]
    opengl = torch.cat([c2w[:, :, :1], -c2w[:, :, 1:3], c2w[:, :, 3:]], dim=2)  # camera y, z columns negated
    camera = torch.stack([opengl[:, 0], -opengl[:, 2], opengl[:, 1], opengl[:, 3]], dim=1)  # world rows x, -z, y
    translation = camera[:, :3, 3]
    camera[:, :3, 3] = translation / (translation.norm(dim=1, keepdim=True) + 1e-8)
    return camera.reshape(len(cameras), CAMERA_CONDITION_SIZE).float()


def ldm_to_diffusers_unet(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """MVDream's LDM-named UNet weights -> diffusers `UNet2DConditionModel` names.

    `state_dict` keys may carry the `model.diffusion_model.` prefix or not (ashawkey's diffusers
    export strips it). Every weight must be used: leftovers raise `UnmappedWeights`.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # a slow import: only when loading

    unprefixed = {key.removeprefix(LDM_UNET_KEY): value for key, value in state_dict.items()}
    camera = {new: unprefixed.pop(old) for new, old in CAMERA_EMBED_KEYS.items() if old in unprefixed}
    converter_config = {key: value for key, value in config.items() if key != "class_embed_type"}
    converted = convert_ldm_unet_checkpoint(
        {LDM_UNET_KEY + key: value for key, value in unprefixed.items()}, converter_config
    )
    used = {id(tensor) for tensor in converted.values()}
    left_over = sorted(key for key, tensor in unprefixed.items() if id(tensor) not in used)
    if left_over:
        raise UnmappedWeights(
            f"{len(left_over)} weights of the checkpoint have no place in the UNet (e.g. {', '.join(left_over[:3])})"
        )
    return {**converted, **camera}


def _ldm_resnet(rest: str) -> str:
    for diffusers_name, ldm_name in (
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("time_emb_proj", "emb_layers.1"),
        ("conv_shortcut", "skip_connection"),
    ):
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name) :]
    raise UnmappedWeights(f"unknown resnet parameter {rest!r}")


def diffusers_to_ldm_unet(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """The inverse of `ldm_to_diffusers_unet` (no prefix): diffusers names -> MVDream's LDM names.

    LDM numbers the UNet as flat lists (openaimodel.py): input_blocks[0] is conv_in, then per
    level `layers_per_block` [resnet, attention?] blocks and a downsampler; output_blocks hold
    `layers_per_block + 1` [resnet, attention?, upsampler?] blocks per level.
    """
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    per_level = config["layers_per_block"] + 1
    top_level = {new: old for new, old in DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"].items()}
    top_level.update(CAMERA_EMBED_KEYS)
    up_has_attention = {
        index: block_type.startswith("CrossAttn") for index, block_type in enumerate(config["up_block_types"])
    }
    rules = (
        (
            r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
            lambda b, j, r: f"input_blocks.{1 + b * per_level + j}.0.{_ldm_resnet(r)}",
        ),
        (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", lambda b, j, r: f"input_blocks.{1 + b * per_level + j}.1.{r}"),
        (
            r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)",
            lambda b, r: f"input_blocks.{(b + 1) * per_level}.0.op.{r}",
        ),
        (r"mid_block\.resnets\.(\d+)\.(.+)", lambda j, r: f"middle_block.{2 * j}.{_ldm_resnet(r)}"),
        (r"mid_block\.attentions\.0\.(.+)", lambda r: f"middle_block.1.{r}"),
        (
            r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
            lambda b, j, r: f"output_blocks.{b * per_level + j}.0.{_ldm_resnet(r)}",
        ),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", lambda b, j, r: f"output_blocks.{b * per_level + j}.1.{r}"),
        (
            r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)",
            lambda b, r: f"output_blocks.{b * per_level + per_level - 1}.{2 if up_has_attention[b] else 1}.conv.{r}",
        ),
    )
    ldm: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in top_level:
            ldm[top_level[key]] = value
            continue
        for pattern, rename in rules:
            match = re.fullmatch(pattern, key)
            if match:
                groups = [int(group) if group.isdigit() else group for group in match.groups()]
                ldm[rename(*groups)] = value
                break
        else:
            raise UnmappedWeights(f"no LDM name for the diffusers parameter {key!r}")
    return ldm
