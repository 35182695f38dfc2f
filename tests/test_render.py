"""The rasterizer backends: projection, compositing, gradients, culling, densification hooks.

The pure-PyTorch backend is checked against gsplat's own pure-PyTorch references
(`gsplat/cuda/_torch_impl.py`) and against a brute-force per-pixel compositor written here; on
CUDA machines the gsplat backend and the torch backend are compared directly.
"""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from splatgen.render import make_backgrounds, rasterize
from splatgen.render.torch_backend import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_STOP,
    project_gaussians,
    rasterize_torch,
)
from splatgen.scene.cameras import CameraBatch, evaluation_orbit, make_cameras
from splatgen.scene.gaussians import ActivatedGaussians, activate
from splatgen.scene.init import BallInit, random_ball

pytestmark = pytest.mark.usefixtures("two_torch_threads")


def random_splats(
    count: int, sh_degree: int, seed: int = 0, opacity: float = 0.5, sh_noise: float = 0.3, device: str = "cpu"
) -> torch.nn.ParameterDict:
    """A ball of Gaussians with random anisotropic scales, rotations, opacities and SH."""
    generator = torch.Generator().manual_seed(seed)
    splats = random_ball(BallInit(count=count, radius=0.6, opacity=opacity), sh_degree, generator).to_parameters()
    with torch.no_grad():
        splats["scales"] += 0.5 * torch.randn(splats["scales"].shape, generator=generator)
        splats["quats"].copy_(torch.randn(splats["quats"].shape, generator=generator))
        splats["opacities"] += torch.randn(splats["opacities"].shape, generator=generator)
        splats["shN"].copy_(sh_noise * torch.randn(splats["shN"].shape, generator=generator))
    return splats.to(device)


def three_cameras(width: int = 40, height: int = 32) -> CameraBatch:
    """Three cameras at different azimuths, elevations and distances; a non-square image with partial tiles."""
    return make_cameras(
        azimuth_deg=torch.tensor([0.0, 130.0, -75.0]),
        elevation_deg=torch.tensor([10.0, 45.0, -20.0]),
        distance=torch.tensor([2.5, 2.0, 3.0]),
        fovy_deg=torch.tensor([50.0, 45.0, 55.0]),
        width=width,
        height=height,
    )


def dense_render(
    gaussians: ActivatedGaussians, cameras: CameraBatch, backgrounds: torch.Tensor, with_depth: bool = False
) -> tuple[torch.Tensor, ...]:
    """Brute force: every pixel blends every visible Gaussian, sorted by depth, with gsplat's rules.

    Projection and colours come from gsplat's pure-torch references; visibility from the backend's radii.
    `with_depth` adds the expected depth sum_i w_i z_i / max(sum_i w_i, 1e-10) (gsplat's "ED") [C, H, W, 1].
    """
    covars, _ = _quat_scale_to_covar_preci(gaussians.quats, gaussians.scales, compute_preci=False)
    _, means2d, depths, conics, _ = _fully_fused_projection(
        gaussians.means, covars, cameras.viewmats, cameras.Ks, cameras.width, cameras.height
    )
    radii = project_gaussians(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        cameras.viewmats,
        cameras.Ks,
        cameras.width,
        cameras.height,
    ).radii
    campos = torch.linalg.inv(cameras.viewmats)[:, :3, 3]
    directions = gaussians.means[None] - campos[:, None]
    coeffs = gaussians.colors[None].expand(len(cameras), *gaussians.colors.shape)
    colors = torch.clamp_min(_spherical_harmonics(gaussians.sh_degree, directions, coeffs) + 0.5, 0.0)  # [C, N, 3]

    ys, xs = torch.meshgrid(torch.arange(cameras.height), torch.arange(cameras.width), indexing="ij")
    pixels = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means2d) + 0.5  # [P, 2]
    images, alphas, expected_depths = [], [], []
    for cam in range(len(cameras)):
        visible = (radii[cam] > 0).all(dim=-1)
        order = torch.argsort(torch.where(visible, depths[cam], torch.inf), stable=True)[: int(visible.sum())]
        delta = means2d[cam, order][None] - pixels[:, None]  # [P, M, 2]
        a, b, c = conics[cam, order].unbind(-1)
        sigma = 0.5 * (a * delta[..., 0] ** 2 + c * delta[..., 1] ** 2) + b * delta[..., 0] * delta[..., 1]
        alpha = torch.clamp_max(gaussians.opacities[order] * torch.exp(-sigma), MAX_ALPHA)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        transmittance = torch.cumprod(1 - alpha, dim=-1)
        before = torch.cat([torch.ones_like(alpha[:, :1]), transmittance[:, :-1]], dim=-1)
        weights = alpha * before * (transmittance > TRANSMITTANCE_STOP)
        pixel_alpha = weights.sum(-1, keepdim=True)
        pixel_color = weights @ colors[cam, order] + (1 - pixel_alpha) * backgrounds[cam]
        images.append(pixel_color.reshape(cameras.height, cameras.width, 3))
        alphas.append(pixel_alpha.reshape(cameras.height, cameras.width, 1))
        pixel_depth = weights @ depths[cam, order, None] / pixel_alpha.clamp(min=1e-10)
        expected_depths.append(pixel_depth.reshape(cameras.height, cameras.width, 1))
    if with_depth:
        return torch.stack(images), torch.stack(alphas), torch.stack(expected_depths)
    return torch.stack(images), torch.stack(alphas)


def test_projection_matches_gsplat_reference():
    splats = random_splats(300, sh_degree=0)
    with torch.no_grad():
        splats["means"][:60] *= 6.0  # some off screen, some behind a camera
    gaussians = activate(splats)
    cameras = three_cameras()
    covars, _ = _quat_scale_to_covar_preci(gaussians.quats, gaussians.scales, compute_preci=False)
    ref_radii, ref_means2d, ref_depths, ref_conics, _ = _fully_fused_projection(
        gaussians.means, covars, cameras.viewmats, cameras.Ks, cameras.width, cameras.height
    )
    ours = project_gaussians(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        None,
        cameras.viewmats,
        cameras.Ks,
        cameras.width,
        cameras.height,
    )
    visible = (ref_radii > 0).all(dim=-1)
    assert visible.sum() > 100 and (~visible).sum() > 20
    assert ours.radii.dtype == torch.int32 and ours.radii.shape == (3, 300, 2)
    torch.testing.assert_close(ours.radii, ref_radii)
    torch.testing.assert_close(ours.depths, ref_depths)
    torch.testing.assert_close(ours.means2d[visible], ref_means2d[visible])
    torch.testing.assert_close(ours.conics[visible], ref_conics[visible])


def test_opacity_aware_radii_follow_gsplat_kernel():
    """gsplat's CUDA projection bounds the box by where alpha reaches 1/255 and culls fainter Gaussians."""
    splats = random_splats(300, sh_degree=0)
    gaussians = activate(splats)
    cameras = three_cameras()
    args = (gaussians.means, gaussians.quats, gaussians.scales)
    plain = project_gaussians(*args, None, cameras.viewmats, cameras.Ks, cameras.width, cameras.height)
    aware = project_gaussians(*args, gaussians.opacities, cameras.viewmats, cameras.Ks, cameras.width, cameras.height)
    a, b, c = plain.conics.unbind(-1)
    det = a * c - b * b
    variances = torch.stack([c / det, a / det], dim=-1)  # diagonal of the blurred 2D covariance
    extent = torch.sqrt(2 * torch.log(gaussians.opacities / ALPHA_THRESHOLD)).clamp_max(3.33)[None, :, None]
    expected = torch.ceil(extent * variances.sqrt()).int()
    both = (aware.radii > 0).all(-1) & (plain.radii > 0).all(-1)
    assert both.sum() > 100
    torch.testing.assert_close(aware.radii[both], expected[both], atol=1, rtol=0)  # float rounding at ceil edges
    assert (aware.radii <= plain.radii).all()


@pytest.mark.parametrize("sh_degree", [0, 3])
@pytest.mark.parametrize("background", ["black", "white", "random"])
def test_tiled_render_matches_dense_compositor(sh_degree, background):
    splats = random_splats(250, sh_degree=sh_degree, seed=sh_degree)
    gaussians = activate(splats)
    cameras = three_cameras()
    backgrounds = make_backgrounds(background, len(cameras), torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = rasterize_torch(gaussians, cameras, backgrounds)
        ref_images, ref_alphas = dense_render(gaussians, cameras, backgrounds)
    assert out.images.shape == (3, 32, 40, 3) and out.alphas.shape == (3, 32, 40, 1)
    assert out.alphas.max() > 0.5  # the scene is actually in view
    torch.testing.assert_close(out.images, ref_images, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.alphas, ref_alphas, atol=2e-5, rtol=1e-4)


def test_expected_depth_matches_dense_compositor_and_leaves_colour_unchanged():
    """depth=True: gsplat's "ED" depth, same images and alphas as the colour-only render, 0 where nothing is hit."""
    splats = random_splats(250, sh_degree=1, seed=7)
    gaussians = activate(splats)
    cameras = three_cameras()
    backgrounds = make_backgrounds("random", len(cameras), torch.Generator().manual_seed(2))
    with torch.no_grad():
        colour_only = rasterize(gaussians, cameras, backgrounds, backend="torch")
        out = rasterize(gaussians, cameras, backgrounds, backend="torch", depth=True)
        ref_images, ref_alphas, ref_depths = dense_render(gaussians, cameras, backgrounds, with_depth=True)
    assert colour_only.depths is None and out.depths.shape == (3, 32, 40, 1)
    torch.testing.assert_close(out.images, colour_only.images)
    torch.testing.assert_close(out.alphas, colour_only.alphas)
    hit = ref_alphas > 0.05
    assert hit.float().mean() > 0.3 and (~hit).any()
    torch.testing.assert_close(out.depths, ref_depths, atol=1e-4, rtol=1e-4)
    # opaque pixels lie at the camera distance give or take the ball's radius (0.6 + 3 sigma)
    distances = torch.tensor([2.5, 2.0, 3.0])[:, None, None, None].expand_as(out.depths)
    opaque = out.alphas > 0.5
    assert ((out.depths[opaque] - distances[opaque]).abs() < 1.2).all()
    assert (out.depths[out.alphas == 0] == 0).all()


def test_tiled_gradients_match_dense_compositor():
    """Across many tiles and cameras, in float64: the tiling (binning, padding, scatter) leaves gradients exact."""
    splats = {
        key: value.detach().double().requires_grad_(True)
        for key, value in random_splats(150, sh_degree=3, seed=2).items()
    }
    cameras = three_cameras()
    cameras.viewmats, cameras.Ks = cameras.viewmats.double(), cameras.Ks.double()
    backgrounds = make_backgrounds("random", len(cameras), torch.Generator().manual_seed(3)).double()
    generator = torch.Generator().manual_seed(4)
    image_weights = torch.rand(3, 32, 40, 3, generator=generator, dtype=torch.float64)
    alpha_weights = torch.rand(3, 32, 40, 1, generator=generator, dtype=torch.float64)

    def gradients(render) -> dict[str, torch.Tensor]:
        images, alphas = render(activate(splats), cameras, backgrounds)
        loss = (images * image_weights).sum() + (alphas * alpha_weights).sum()
        return dict(zip(splats, torch.autograd.grad(loss, list(splats.values()))))

    def tiled(gaussians, cameras, backgrounds):
        out = rasterize_torch(gaussians, cameras, backgrounds)
        return out.images, out.alphas

    ours, reference = gradients(tiled), gradients(dense_render)
    for key in splats:
        assert reference[key].abs().max() > 0, key
        torch.testing.assert_close(ours[key], reference[key], atol=1e-9, rtol=1e-7)


def test_chunking_and_recompute_leave_results_unchanged(monkeypatch):
    """Small chunks (many padded groups) and checkpointed recomputation give the same images and gradients."""
    from splatgen.render import torch_backend

    splats = random_splats(200, sh_degree=1, seed=6)
    cameras = three_cameras()
    backgrounds = make_backgrounds("white", len(cameras))

    def render_and_grads() -> list[torch.Tensor]:
        out = rasterize_torch(activate(splats), cameras, backgrounds)
        out.info["means2d"].retain_grad()
        (out.images.square().sum() + out.alphas.sum()).backward()
        results = [out.images.detach(), out.alphas.detach(), out.info["means2d"].grad]
        results += [param.grad.clone() for param in splats.values()]
        splats.zero_grad()
        return results

    default = render_and_grads()
    monkeypatch.setattr(torch_backend, "CHUNK_PAIRS", 4096)
    monkeypatch.setattr(torch_backend, "MIN_SPLIT_PAIRS", 256)
    monkeypatch.setattr(torch_backend, "RETAINED_PAIRS", 0)
    for ours, reference in zip(render_and_grads(), default):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)  # float32 sums in another order


def test_early_stop_matches_dense_compositor():
    """Opaque, overlapping Gaussians drive transmittance under 1e-4: the stop must match gsplat's."""
    splats = random_splats(120, sh_degree=1, seed=5, opacity=0.98)
    with torch.no_grad():
        splats["scales"] += 1.0
        splats["opacities"].fill_(6.0)
    gaussians = activate(splats)
    cameras = three_cameras(24, 20)
    backgrounds = make_backgrounds("white", len(cameras))
    with torch.no_grad():
        out = rasterize_torch(gaussians, cameras, backgrounds)
        ref_images, ref_alphas = dense_render(gaussians, cameras, backgrounds)
    assert (out.alphas > 1 - 2 * TRANSMITTANCE_STOP).float().mean() > 0.2
    torch.testing.assert_close(out.images, ref_images, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.alphas, ref_alphas, atol=2e-5, rtol=1e-4)


def gradcheck_scene() -> tuple[dict[str, torch.Tensor], CameraBatch]:
    """Four broad Gaussians covering an 8x8 view, in float64: every pixel sees every Gaussian."""
    means = torch.tensor(
        [[0.0, 0.0, 0.0], [0.12, -0.08, 0.2], [-0.15, 0.1, -0.1], [0.05, 0.15, 0.3]], dtype=torch.float64
    )
    scales = torch.tensor([[0.5, 0.3, 0.4], [0.3, 0.5, 0.4], [0.4, 0.4, 0.6], [0.5, 0.3, 0.3]], dtype=torch.float64)
    quats = torch.tensor(
        [[1.0, 0.2, -0.1, 0.3], [0.9, -0.3, 0.2, 0.1], [1.0, 0.0, 0.4, -0.2], [0.8, 0.1, 0.1, 0.5]], dtype=torch.float64
    )
    opacities = torch.tensor([0.7, 0.5, 0.6, 0.4], dtype=torch.float64)
    colors = torch.linspace(-0.8, 0.8, 4 * 4 * 3, dtype=torch.float64).reshape(4, 4, 3)  # degree 1
    cameras = make_cameras(
        torch.tensor([20.0]), torch.tensor([15.0]), torch.tensor([2.0]), torch.tensor([30.0]), width=8, height=8
    )
    cameras.viewmats = cameras.viewmats.double()
    cameras.Ks = cameras.Ks.double()
    return {"means": means, "scales": scales, "quats": quats, "opacities": opacities, "colors": colors}, cameras


def test_gradcheck_float64():
    inputs, cameras = gradcheck_scene()
    backgrounds = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)

    def render(means, scales, quats, opacities, colors):
        gaussians = ActivatedGaussians(means, quats, scales, opacities, colors, sh_degree=1)
        out = rasterize_torch(gaussians, cameras, backgrounds)
        return out.images, out.alphas

    # Smoothness precondition: no (pixel, Gaussian) alpha sits at a threshold gsplat switches on.
    with torch.no_grad():
        gaussians = ActivatedGaussians(
            inputs["means"], inputs["quats"], inputs["scales"], inputs["opacities"], inputs["colors"], sh_degree=1
        )
        projection = project_gaussians(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, cameras.viewmats, cameras.Ks, 8, 8
        )
        assert (projection.radii > 0).all()
        ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        delta = projection.means2d[0][:, None] - torch.stack([xs, ys], -1).reshape(1, -1, 2).double() - 0.5  # [N, P, 2]
        a, b, c = projection.conics[0].unbind(-1)
        dx, dy = delta.unbind(-1)
        sigma = 0.5 * (a[:, None] * dx**2 + c[:, None] * dy**2) + b[:, None] * dx * dy
        alpha = gaussians.opacities[:, None] * torch.exp(-sigma)
        assert alpha.min() > 2 * ALPHA_THRESHOLD and alpha.max() < MAX_ALPHA - 0.1
        _, out_alphas = render(*inputs.values())
        assert out_alphas.max() < 1 - 10 * TRANSMITTANCE_STOP

    args = tuple(t.clone().requires_grad_(True) for t in inputs.values())
    assert torch.autograd.gradcheck(render, args, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_behind_camera_and_off_screen_are_culled():
    splats = random_splats(3, sh_degree=0)
    cameras = evaluation_orbit(1, 32, 32)  # camera on +z looking at the origin
    camera_centre = cameras.camtoworlds[0, :3, 3]
    with torch.no_grad():
        splats["means"].copy_(
            torch.stack([torch.zeros(3), 1.5 * camera_centre, torch.tensor([5.0, 0.0, 0.0])])
        )  # in view, behind the camera, far off to the side
        splats["scales"].fill_(math.log(0.1))
        splats["opacities"].fill_(4.0)
    backgrounds = make_backgrounds("black", 1)
    out = rasterize_torch(activate(splats), cameras, backgrounds)
    visible = (out.info["radii"][0] > 0).all(-1)
    assert visible.tolist() == [True, False, False]
    out.images.sum().backward()
    assert splats["means"].grad[0].abs().sum() > 0
    assert (splats["means"].grad[1:] == 0).all() and (splats["opacities"].grad[1:] == 0).all()
    assert torch.isfinite(splats["means"].grad).all()

    alone = torch.nn.ParameterDict({key: torch.nn.Parameter(value.detach()[:1]) for key, value in splats.items()})
    with torch.no_grad():
        torch.testing.assert_close(rasterize_torch(activate(alone), cameras, backgrounds).images, out.images)


def test_nothing_visible_renders_background_and_backpropagates():
    splats = random_splats(4, sh_degree=0)
    cameras = evaluation_orbit(2, 16, 16)
    with torch.no_grad():
        splats["means"].add_(torch.tensor([0.0, 100.0, 0.0]))
    backgrounds = make_backgrounds("random", 2, torch.Generator().manual_seed(0))
    out = rasterize(activate(splats), cameras, backgrounds, backend="torch")
    assert (out.info["radii"] == 0).all()
    torch.testing.assert_close(out.images, backgrounds[:, None, None, :].expand(2, 16, 16, 3))
    torch.testing.assert_close(out.alphas, torch.zeros(2, 16, 16, 1))
    out.info["means2d"].retain_grad()
    out.images.sum().backward()
    assert (out.info["means2d"].grad == 0).all()  # present, as DefaultStrategy needs it


def test_info_layout_and_means2d_gradient():
    splats = random_splats(200, sh_degree=1)
    cameras = three_cameras()
    out = rasterize_torch(activate(splats), cameras, make_backgrounds("white", 3))
    info = out.info
    assert info["means2d"].shape == (3, 200, 2) and not info["means2d"].is_leaf
    assert info["radii"].shape == (3, 200, 2) and info["radii"].dtype == torch.int32
    assert info["depths"].shape == (3, 200) and info["conics"].shape == (3, 200, 3)
    assert (info["width"], info["height"], info["n_cameras"], info["gaussian_ids"]) == (40, 32, 3, None)
    info["means2d"].retain_grad()
    out.images.square().sum().backward()
    grad = info["means2d"].grad
    visible = (info["radii"] > 0).all(-1)
    assert (grad[~visible] == 0).all() and (grad[visible].abs().sum(-1) > 0).float().mean() > 0.9


def test_default_strategy_runs_on_torch_backend_info():
    from gsplat.strategy import DefaultStrategy

    splats = random_splats(200, sh_degree=1)
    optimizers = {key: torch.optim.Adam([param], lr=1e-3) for key, param in splats.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=2, grow_grad2d=1e-6, verbose=False)
    strategy.check_sanity(splats, optimizers)
    state = strategy.initialize_state()
    cameras = three_cameras()
    for step in range(3):
        out = rasterize_torch(activate(splats), cameras, make_backgrounds("black", 3))
        strategy.step_pre_backward(splats, optimizers, state, step, out.info)
        out.images.square().sum().backward()
        strategy.step_post_backward(splats, optimizers, state, step, out.info, packed=False)
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad()
    assert len(splats["means"]) != 200  # step 2 refined: duplicated/split the high-gradient Gaussians
    assert all(len(param) == len(splats["means"]) for param in splats.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_and_torch_backends_agree():
    """Same scene through gsplat's CUDA kernels and the torch backend (on CUDA too): images, alphas, gradients.

    float32 on both sides, with CUDA's fast exp: a (pixel, Gaussian) pair whose alpha sits within
    rounding of 1/255 may be kept by one and skipped by the other, so a few pixels may differ by
    up to ~1/255 of a colour; everything else agrees to 1e-4.
    """
    cameras = three_cameras(64, 48).to("cuda")
    backgrounds = make_backgrounds("random", 3, torch.Generator().manual_seed(0), device="cuda")
    results = {}
    for backend in ("gsplat", "torch"):
        splats = random_splats(2000, sh_degree=3, device="cuda")
        out = rasterize(activate(splats), cameras, backgrounds, backend=backend, depth=True)
        out.info["means2d"].retain_grad()
        (out.images * torch.linspace(0, 1, 3, device="cuda")).sum().backward()
        results[backend] = (out, {key: param.grad for key, param in splats.items()})
    (gs_out, gs_grads), (torch_out, torch_grads) = results["gsplat"], results["torch"]
    torch.testing.assert_close(torch_out.info["radii"], gs_out.info["radii"], atol=1, rtol=0)  # fast log, then ceil
    image_error = float((torch_out.images - gs_out.images).abs().max())
    alpha_error = float((torch_out.alphas - gs_out.alphas).abs().max())
    print(f"parity: max |image difference| {image_error:.2e}, max |alpha difference| {alpha_error:.2e}")  # gpu_check
    for ours, theirs in [(torch_out.images, gs_out.images), (torch_out.alphas, gs_out.alphas)]:
        difference = (ours - theirs).abs()
        assert difference.max() < 1e-2 and (difference > 1e-4).float().mean() < 1e-3, difference.max()
    opaque = gs_out.alphas > 0.5  # expected depth: divided by alpha, so compare where alpha is not tiny
    depth_difference = (torch_out.depths - gs_out.depths).abs()[opaque]
    assert depth_difference.max() < 5e-2 and (depth_difference > 1e-3).float().mean() < 1e-2, depth_difference.max()
    visible = (gs_out.info["radii"] > 0).all(-1)
    gradients = {"means2d": (torch_out.info["means2d"].grad[visible], gs_out.info["means2d"].grad[visible])}
    gradients.update({key: (torch_grads[key], gs_grads[key]) for key in gs_grads})
    for name, (ours, theirs) in gradients.items():
        scale = theirs.abs().max().clamp_min(1e-12)  # float32 sums in different orders: compare relative to the largest
        torch.testing.assert_close(ours / scale, theirs / scale, atol=2e-3, rtol=0, msg=name)
