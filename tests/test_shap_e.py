"""Shap-E initialisation: the mesh-to-Gaussians sampling, and a clear error without the model."""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console

from splatgen.scene.init import ShapEInit
from splatgen.scene.shap_e import ShapEUnavailable, mesh_to_gaussians, shap_e_gaussians, z_up_to_y_up


def unit_cube():
    verts = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    faces = torch.tensor(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ]
    )
    colors = (verts + 1.0) / 2.0  # a different colour at each corner
    return verts, faces, colors


def test_samples_lie_on_the_surface_inside_the_ball():
    verts, faces, colors = unit_cube()
    gaussians = mesh_to_gaussians(
        verts, faces, colors, 2000, radius=0.8, opacity=0.1, sh_degree=1, generator=torch.Generator().manual_seed(0)
    )
    assert len(gaussians) == 2000 and gaussians.sh_degree == 1
    assert float(gaussians.means.norm(dim=-1).max()) <= 0.8 + 1e-5
    half_side = 0.8 / math.sqrt(3.0)  # the cube's corners touch the ball
    assert torch.allclose(gaussians.means.abs().max(dim=-1).values, torch.full((2000,), half_side), atol=1e-4)
    assert torch.allclose(torch.sigmoid(gaussians.opacities), torch.full((2000,), 0.1))


def test_z_up_becomes_y_up():
    assert z_up_to_y_up(torch.tensor([[0.0, 0.0, 1.0]])).tolist() == [[0.0, 1.0, 0.0]]


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(ShapEUnavailable, match="--init.model"):
        shap_e_gaussians(
            "a corgi", ShapEInit(model=str(tmp_path / "nowhere")), 0, torch.Generator(), Console(quiet=True)
        )
