"""`splatgen eval`: known answers on an analytic scene, CLIP against a hand-computed cosine, and
the command on real tiny runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_train import QUIET, tiny_config

from splatgen.cli import main
from splatgen.eval.clip import Clip, clip_preprocess, r_precision, similarity_matrix
from splatgen.eval.consistency import view_consistency, warp_coordinates
from splatgen.eval.lpips import LPIPS, consecutive_lpips
from splatgen.eval.orbit import expected_depth
from splatgen.eval.run import EVAL_FILE, clip_view_indices
from splatgen.eval.tiny_clip import make_tiny_clip
from splatgen.scene.cameras import CameraBatch, evaluation_orbit
from splatgen.scene.gaussians import ActivatedGaussians, rgb_to_sh0
from splatgen.train.loop import train

RADIUS = 0.9


def sphere_hits(cameras: CameraBatch, radius: float = RADIUS):
    """Ray-traced sphere at the origin: world hit points [C, H, W, 3], camera depth [C, H, W], hit mask."""
    height, width = cameras.height, cameras.width
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # [H, W, 3]
    camtoworlds = cameras.camtoworlds  # [C, 4, 4]
    rays_camera = pixels @ torch.linalg.inv(cameras.Ks).transpose(1, 2)[:, None]  # [C, H, W, 3], camera z = 1
    directions = torch.einsum("cij,chwj->chwi", camtoworlds[:, :3, :3], rays_camera)  # world, not normalised
    origins = camtoworlds[:, None, None, :3, 3].expand_as(directions)
    a = (directions * directions).sum(-1)
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    discriminant = b * b - a * c
    hit = discriminant > 0
    t = (-b - discriminant.clamp_min(0).sqrt()) / a  # = camera depth, since the ray's camera z is 1
    return origins + t[..., None] * directions, torch.where(hit, t, torch.zeros_like(t)), hit


def textured(points: torch.Tensor) -> torch.Tensor:  # [..., 3] -> [..., 3] smooth colours on the surface
    x, y, z = points.unbind(-1)
    return torch.stack(
        [0.5 + 0.4 * torch.sin(4 * x + 1), 0.5 + 0.4 * torch.sin(3 * z - 2 * y), 0.5 + 0.4 * torch.cos(5 * y)], -1
    )


def sphere_turntable(num_frames: int, size: int, texture=textured):
    """Premultiplied colours, alphas and depths of the analytic sphere on the evaluation orbit."""
    cameras = evaluation_orbit(num_frames, size, size)
    points, depth, hit = sphere_hits(cameras)
    alpha = hit.float()[..., None]
    return texture(points) * alpha, alpha, depth[..., None], cameras


def test_the_warp_is_exact_where_depth_and_poses_are_known():
    cameras = evaluation_orbit(7, 48, 40)
    points, depth, hit = sphere_hits(cameras)
    source, target = 0, 1
    positions, z = warp_coordinates(
        depth[source], cameras.Ks[source], cameras.viewmats[source], cameras.Ks[target], cameras.viewmats[target]
    )
    in_target = points[source] @ cameras.viewmats[target, :3, :3].T + cameras.viewmats[target, :3, 3]  # [H, W, 3]
    expected = in_target @ cameras.Ks[target].T
    expected_positions = expected[..., :2] / expected[..., 2:]
    assert hit[source].sum() > 200
    torch.testing.assert_close(positions[hit[source]], expected_positions[hit[source]], atol=2e-3, rtol=0)
    torch.testing.assert_close(z[hit[source]], in_target[..., 2][hit[source]], atol=1e-4, rtol=0)


def test_a_constant_turntable_scores_zero_and_shuffling_raises_both_scores():
    uniform = lambda points: torch.full_like(points, 0.3)  # noqa: E731  looks the same from every azimuth
    colors, alphas, depths, cameras = sphere_turntable(12, 64, uniform)
    constant = view_consistency(colors, alphas, depths, cameras)
    assert constant.error < 1e-6 and constant.coverage > 0.8  # 30 deg apart: a rim of each view is hidden in the next
    lpips = LPIPS("alex", backbone="random")
    assert consecutive_lpips(lpips, (colors + 1 - alphas).permute(0, 3, 1, 2) * 2 - 1).abs().max() < 1e-6

    colors, alphas, depths, cameras = sphere_turntable(12, 64)
    ordered = view_consistency(colors, alphas, depths, cameras)
    shuffle = torch.tensor([0, 6, 2, 9, 4, 11, 1, 7, 3, 10, 5, 8])
    shuffled = view_consistency(colors[shuffle], alphas[shuffle], depths[shuffle], cameras)
    assert ordered.error < 0.02  # bilinear resampling of a smooth texture
    assert shuffled.error > 5 * ordered.error
    frames = ((colors + 1 - alphas).permute(0, 3, 1, 2)) * 2 - 1
    assert consecutive_lpips(lpips, frames[shuffle]).mean() > 1.5 * consecutive_lpips(lpips, frames).mean()


def test_occluded_pixels_are_not_counted():
    """Move the sphere's depth map far back in the target: nothing in the source matches a visible surface."""
    colors, alphas, depths, cameras = sphere_turntable(4, 48)
    depths = depths.clone()
    depths[1::2] *= 0.5  # every other view claims a surface much nearer: the source points are hidden
    result = view_consistency(colors, alphas, depths, cameras)
    assert math.isnan(result.error) and result.coverage == 0.0


def test_expected_depth_of_one_opaque_gaussian_is_its_camera_depth():
    gaussians = ActivatedGaussians(
        means=torch.tensor([[0.1, -0.05, 0.2]]),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), 0.3),
        opacities=torch.tensor([0.99]),
        colors=rgb_to_sh0(torch.tensor([[[0.2, 0.4, 0.6]]])),
        sh_degree=0,
    )
    cameras = evaluation_orbit(3, 32, 32)
    depths, alphas = expected_depth(gaussians, cameras, backend="torch")
    centre_z = (cameras.viewmats[:, :3, :3] @ gaussians.means[0] + cameras.viewmats[:, :3, 3])[:, 2]  # [C]
    covered = alphas[..., 0] > 0.01
    assert covered.sum() > 50
    expected = centre_z[:, None, None].expand_as(depths[..., 0])
    torch.testing.assert_close(depths[..., 0][covered], expected[covered], atol=1e-4, rtol=0)


def test_r_precision_counts_the_objects_their_own_prompt_retrieves():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # object 0 -> prompt 0: right
            [0.2, 0.1, 0.5],  # object 1 -> prompt 2: wrong
            [0.0, 0.3, 0.8],  # object 2 -> prompt 2: right
            [0.6, 0.5, 0.1],  # object 3 (prompt 1) -> prompt 0: wrong
        ]
    )
    assert r_precision(scores, torch.tensor([0, 1, 2, 1])) == 0.5
    assert r_precision(scores, torch.tensor([0, 2, 2, 0])) == 1.0


def test_clip_similarity_equals_the_models_own_cosine(tmp_path):
    """Our embeddings against CLIPModel.forward: logits_per_image / exp(logit_scale) is the cosine."""
    clip = Clip.load(str(make_tiny_clip(tmp_path / "clip")))
    images = torch.rand(3, 40, 56, 3)
    texts = ["a red apple", "a corgi, back view"]
    ours = similarity_matrix(clip.embed_images(images), clip.embed_texts(texts))  # [3, 2]
    tokens = clip.tokenizer(texts, padding=True, return_tensors="pt")
    pixels = clip_preprocess(images, clip.image_size)
    with torch.no_grad():
        output = clip.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
    cosine = output.logits_per_image / clip.model.logit_scale.exp()
    torch.testing.assert_close(ours, cosine, atol=1e-5, rtol=1e-5)
    # and by hand from the projected features
    image_features = clip.model.visual_projection(clip.model.vision_model(pixel_values=pixels).pooler_output)
    text_features = clip.model.text_projection(clip.model.text_model(**tokens).pooler_output)
    by_hand = torch.nn.functional.cosine_similarity(image_features[:, None], text_features[None], dim=-1)
    torch.testing.assert_close(ours, by_hand.detach(), atol=1e-5, rtol=1e-5)


def test_clip_preprocessing_resizes_the_short_side_and_crops_the_centre():
    image = torch.zeros(1, 60, 90, 3)
    image[:, :, 45:] = 1.0  # right half white
    pixels = clip_preprocess(image, 30)  # -> 30 x 45, centre crop 30 x 30 (columns 7..36)
    assert pixels.shape == (1, 3, 30, 30)
    assert pixels[0, 0, :, 0].max() < 0 and pixels[0, 0, :, -1].min() > 0  # black left edge, white right edge


def test_clip_views_are_evenly_spaced_from_the_front():
    assert clip_view_indices(100, 20) == list(range(0, 100, 5))
    assert clip_view_indices(8, 3) == [0, 2, 5]


def test_missing_clip_weights_are_one_line(tmp_path, capsys):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"")
    ply = tmp_path / "a.ply"
    ply.write_bytes(b"")
    backbone = ["--lpips-net", "alex", "--lpips-backbone", str(random_alexnet_checkpoint(tmp_path / "alex.pth"))]
    assert main(["eval", str(ply), "--prompt", "a dog", "--clip-model", str(folder), *backbone]) == 2
    printed = capsys.readouterr().out
    assert "only PyTorch .bin weights" in printed and "safetensors" in printed and printed.count("\n") == 1
    tiny = str(make_tiny_clip(tmp_path / "tiny"))
    assert main(["eval", str(ply), "--prompt", "a dog", "--clip-model", tiny, "--lpips-backbone", str(folder)]) == 2
    printed = capsys.readouterr().out
    assert "vgg16-397923af.pth" in printed and printed.count("\n") == 1
    assert main(["eval", str(tmp_path / "nothing.ply"), "--prompt", "a dog"]) == 2
    assert "neither a run folder nor a .ply" in capsys.readouterr().out
    assert main(["eval", str(ply)]) == 2
    assert "--prompt" in capsys.readouterr().out
    assert main(["eval"]) == 2
    assert "at least one run folder" in capsys.readouterr().out
    assert main(["eval", str(ply), "--prompt", "a dog", "--clip-model", "nobody/no-such-clip"]) == 2
    printed = capsys.readouterr().out
    assert "(HF_HUB_OFFLINE=1 is set): --clip-model nobody/no-such-clip: not in the local hub cache" in printed


def test_a_missing_lpips_backbone_is_reported_before_clip_loads(tmp_path, capsys, monkeypatch):
    from splatgen.eval.clip import Clip

    tiny = str(make_tiny_clip(tmp_path / "tiny"))
    ply = tmp_path / "a.ply"
    ply.write_bytes(b"")

    def no_clip(*args, **kwargs):
        raise AssertionError("CLIP was loaded before the LPIPS backbone was checked")

    monkeypatch.setattr(Clip, "load", no_clip)
    missing = tmp_path / "no-alexnet.pth"
    arguments = ["eval", str(ply), "--prompt", "a dog", "--clip-model", tiny, "--lpips-net", "alex"]
    assert main([*arguments, "--lpips-backbone", str(missing)]) == 2
    printed = capsys.readouterr().out
    assert "alexnet-owt-7be5be79.pth" in printed and str(missing) in printed and printed.count("\n") == 1


def random_alexnet_checkpoint(path):
    """A torchvision-layout AlexNet checkpoint with random weights (no ImageNet download in tests)."""
    model = LPIPS("alex", backbone="random", seed=1)
    torch.save({f"features.{key}": value for key, value in model.features.state_dict().items()}, path)
    return path


@pytest.mark.slow
def test_eval_measures_smoke_runs_and_writes_eval_json(tmp_path, tiny_models, capsys):
    runs = [
        train(tiny_config(tmp_path / name, prompt=prompt, steps=2), console=QUIET).run_dir
        for name, prompt in (("apple", "a red apple"), ("corgi", "a corgi"))
    ]
    backbone = random_alexnet_checkpoint(tmp_path / "alexnet-owt-7be5be79.pth")
    arguments = [*map(str, runs), "--clip-model", "tiny-random", "--frames", "8", "--resolution", "32"]
    arguments += ["--clip-views", "4", "--lpips-net", "alex", "--lpips-backbone", str(backbone), "--device", "cpu"]
    assert main(["eval", *arguments, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [result["prompt"] for result in results] == ["a red apple", "a corgi"]
    for run, result in zip(runs, results):
        saved = json.loads((run / EVAL_FILE).read_text())
        assert saved == result
        assert -100 <= result["clip_similarity"] <= 100 and result["a_lpips"] >= 0
        assert result["r_precision"]["pool"] == ["a red apple", "a corgi"]
        assert result["r_precision"]["value"] in (0.0, 0.5, 1.0)
        assert [view["expected"] for view in result["views"]["per_view"]] == ["front", "side", "back", "side"]
        assert result["settings"]["frames"] == 8 and result["settings"]["resolution"] == 32
    assert main(["eval", *arguments]) == 0
    table = capsys.readouterr().out
    assert "CLIP sim x100" in table and "apple" in table and "corgi" in table
    assert main(["report", str(runs[0])]) == 0
    page = (runs[0] / "report.html").read_text()
    assert 'id="eval"' in page and "Per-view CLIP labels" in page  # the eval section, from eval.json
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "compare.html")]) == 0
    printed = capsys.readouterr().out
    assert "splatgen compare" in printed and "R-precision" in printed
    assert (tmp_path / "compare.html").is_file()
