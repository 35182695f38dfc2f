"""Shap-E initialisation (GaussianDreamer, Yi et al. 2024): a coarse coloured mesh for the prompt,
sampled into Gaussians on its surface.

diffusers' `ShapEPipeline` (Jun & Nichol 2023) decodes a latent to a marching-cubes mesh with
per-vertex RGB. Its frame is z-up; ours is y-up with the front on +z, so (x, y, z) -> (x, z, -y).
Points are drawn area-weighted over the faces, coloured by barycentric interpolation, and the
shape is centred and scaled into a ball of `radius`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from splatgen.errors import SplatgenError, model_unavailable_message
from splatgen.io.weights import pickled_refusal
from splatgen.scene.gaussians import Gaussians, num_sh_bases, rgb_to_sh0

if TYPE_CHECKING:
    import torch

DEFAULT_SHAP_E = "openai/shap-e"


@dataclass
class ShapEInit:
    """Start from a Shap-E point cloud for the prompt (GaussianDreamer), via diffusers' ShapEPipeline."""

    config_name = "shap-e"
    model: str = DEFAULT_SHAP_E
    """Shap-E model: hub id or local folder (diffusers layout)."""
    count: int = 20_000
    """Number of Gaussians sampled on the Shap-E surface."""
    guidance_scale: float = 15.0
    """Shap-E classifier-free guidance scale."""
    inference_steps: int = 64
    """Shap-E sampling steps."""
    radius: float = 0.8
    """The Shap-E shape is scaled to fit a ball of this radius."""
    opacity: float = 0.1
    """Initial opacity of the Gaussians."""


class ShapEUnavailable(SplatgenError):
    """The Shap-E model could not be loaded."""


def shap_e_unavailable(model: str, reason: str) -> ShapEUnavailable:
    return ShapEUnavailable(
        model_unavailable_message(
            "Shap-E model",
            model,
            reason,
            setting="--init.model",
            hub_ids=DEFAULT_SHAP_E,
            local="a local folder in the diffusers layout",
            download=f"hf download {DEFAULT_SHAP_E} --local-dir DIR",
            otherwise="Or start from a random ball with --init ball.",
        )
    )


def z_up_to_y_up(points: torch.Tensor) -> torch.Tensor:
    """[N, 3] Shap-E (x, y, z-up) -> splatgen (x, y-up, z-front): (x, y, z) -> (x, z, -y)."""
    import torch

    return torch.stack([points[:, 0], points[:, 2], -points[:, 1]], dim=-1)


def sample_mesh_surface(
    verts: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3] int
    vertex_colors: torch.Tensor,  # [V, 3] in [0, 1]
    count: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Area-weighted surface samples: (points [count, 3], colours [count, 3], total surface area)."""
    import torch

    corners = verts[faces]  # [F, 3, 3]
    areas = 0.5 * torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=-1)  # [F]
    total_area = float(areas.sum())
    if not total_area > 0:
        raise SplatgenError("Shap-E produced an empty mesh for this prompt; try another prompt or --init ball")
    chosen = torch.multinomial(areas, count, replacement=True, generator=generator)  # [count]
    u, v = torch.rand(count, generator=generator), torch.rand(count, generator=generator)
    flip = u + v > 1.0
    u, v = torch.where(flip, 1.0 - u, u), torch.where(flip, 1.0 - v, v)
    barycentric = torch.stack([1.0 - u - v, u, v], dim=-1)  # [count, 3]
    points = (barycentric[..., None] * corners[chosen]).sum(dim=1)
    colors = (barycentric[..., None] * vertex_colors[faces[chosen]]).sum(dim=1)
    return points, colors.clamp(0.0, 1.0), total_area


def mesh_to_gaussians(
    verts: torch.Tensor,
    faces: torch.Tensor,
    vertex_colors: torch.Tensor,
    count: int,
    radius: float,
    opacity: float,
    sh_degree: int,
    generator: torch.Generator,
) -> Gaussians:
    """Isotropic Gaussians on the mesh surface, sized to the mean sample spacing, fitted into a ball of `radius`."""
    import torch

    verts = z_up_to_y_up(verts.float())
    verts = verts - 0.5 * (verts.max(dim=0).values + verts.min(dim=0).values)
    verts = verts * (radius / verts.norm(dim=-1).max().clamp_min(1e-8))
    points, colors, area = sample_mesh_surface(verts, faces.long(), vertex_colors.float(), count, generator)
    spacing = math.sqrt(area / count)
    quats = torch.zeros(count, 4)
    quats[:, 0] = 1.0
    return Gaussians(
        means=points,
        scales=torch.full((count, 3), math.log(spacing)),
        quats=quats,
        opacities=torch.full((count,), math.log(opacity / (1.0 - opacity))),
        sh0=rgb_to_sh0(colors).unsqueeze(1),
        shN=torch.zeros(count, num_sh_bases(sh_degree) - 1, 3),
    )


def shap_e_gaussians(
    prompt: str, init: ShapEInit, sh_degree: int, generator: torch.Generator, console: Console
) -> Gaussians:
    """Run Shap-E for the prompt (GPU recommended) and sample its mesh into Gaussians."""
    import torch
    from diffusers import ShapEPipeline

    from splatgen.prior.loading import hub_failure_reason

    device = "cuda" if torch.cuda.is_available() else "cpu"
    console.print(f"Shap-E: generating a coarse shape with {init.model} on {device} ...")
    refusal = pickled_refusal(init.model)
    if refusal is not None:
        raise shap_e_unavailable(init.model, refusal)
    try:
        pipeline = ShapEPipeline.from_pretrained(
            init.model, use_safetensors=True, dtype=torch.float16 if device == "cuda" else torch.float32
        )  # never unpickle weights
    except (OSError, ValueError) as error:
        raise shap_e_unavailable(init.model, hub_failure_reason(init.model, "the pipeline", error)) from error
    pipeline = pipeline.to(device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    output = pipeline(
        prompt,
        guidance_scale=init.guidance_scale,
        num_inference_steps=init.inference_steps,
        output_type="mesh",
        generator=torch.Generator(device).manual_seed(seed),
    )
    mesh = output.images[0]
    colors = torch.stack([mesh.vertex_channels[channel] for channel in ("R", "G", "B")], dim=-1)
    del pipeline
    return mesh_to_gaussians(
        mesh.verts.cpu(), mesh.faces.cpu(), colors.cpu(), init.count, init.radius, init.opacity, sh_degree, generator
    )
