"""The browser viewers: conversions, the LiveViewer's threading contract, `serve_ply`, and real-browser checks.

Browser tests (marked `browser`) open the page in headless Chromium and read the pixels; they are
skipped when /usr/bin/chromium is absent (scripts/install_browser.sh installs it).
"""

from __future__ import annotations

import io
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import (
    HeadlessChromium,
    assert_splats_drawn,
    assert_splats_drawn_during,
    background_color,
    browser_test,
    color_fraction,
    free_port,
    hold_last_step,
    near,
    scene_coverage,
    scene_region,
    screenshot,
)
from rich.console import Console

import splatgen.viewer.standalone as standalone
from splatgen.errors import BadAssetFile, OutputError
from splatgen.io.ply import read_ply, write_ply
from splatgen.scene.cameras import evaluation_orbit, make_cameras
from splatgen.scene.gaussians import SPLAT_KEYS, Gaussians, sh0_to_rgb
from splatgen.viewer import LiveViewer, TrainingSnapshot, ViewerConfig, serve_ply
from splatgen.viewer.convert import covariances_from_raw, frustum_poses, quats_to_rotations, splat_arrays
from splatgen.viewer.demo import DemoConfig, SimulatedTraining, marker_ball, run_demo
from splatgen.viewer.layers import FRUSTUM_COLOR
from splatgen.viewer.panel import CHECKPOINT, LIVE, format_view_prompts

SAMPLE_PLY = Path(__file__).resolve().parents[1] / "assets" / "sample.ply"


# -- helpers ------------------------------------------------------------------------------------


def as_splats(gaussians: Gaussians) -> dict[str, torch.Tensor]:
    return {key: getattr(gaussians, key).clone() for key in SPLAT_KEYS}


def snapshot_of(splats: dict[str, torch.Tensor], step: int = 5, cameras=None, view_prompts=None) -> TrainingSnapshot:
    return TrainingSnapshot(
        step=step,
        total_steps=100,
        loss=0.25,
        num_gaussians=splats["means"].shape[0],
        truncation=2.5,
        timestep_range=(20, 980),
        splats=splats,
        cameras=cameras,
        view_prompts=view_prompts,
    )


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=False)


def console_text(console: Console) -> str:
    return console.file.getvalue()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll `condition` until it holds; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[LiveViewer]:
    live = LiveViewer(ViewerConfig(port=0, update_hz=50.0), tmp_path, quiet_console())
    yield live
    live.close()


# -- conversions --------------------------------------------------------------------------------


def test_covariance_is_rotated_diagonal_of_squared_scales() -> None:
    quarter_turn_about_z = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    log_scales = torch.log(torch.tensor([[0.3, 0.1, 0.2]]))
    covariance = covariances_from_raw(quarter_turn_about_z, log_scales)[0]
    torch.testing.assert_close(covariance, torch.diag(torch.tensor([0.01, 0.09, 0.04])), atol=1e-6, rtol=0)


def test_covariances_are_symmetric_positive_definite_for_unnormalised_quats() -> None:
    generator = torch.Generator().manual_seed(1)
    quats = 3.0 * torch.randn(64, 4, generator=generator)
    log_scales = torch.randn(64, 3, generator=generator)
    covariances = covariances_from_raw(quats, log_scales)
    torch.testing.assert_close(covariances, covariances.transpose(1, 2))
    assert (torch.linalg.eigvalsh(covariances.double()) > 0).all()
    rotations = quats_to_rotations(quats)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-5, rtol=0)


def test_splat_arrays_activate_and_drop_nonfinite_rows() -> None:
    splats = as_splats(marker_ball(count=10))
    splats["sh0"][0] = 10.0  # far outside [0, 1] once converted
    splats["opacities"][1] = 0.0
    splats["means"][2, 0] = float("nan")
    arrays = splat_arrays(splats)
    assert len(arrays) == 9
    assert (
        arrays.centers.dtype == np.float32
        and arrays.covariances.shape == (9, 3, 3)
        and arrays.opacities.shape == (9, 1)
    )
    np.testing.assert_allclose(arrays.rgbs[0], [1.0, 1.0, 1.0])
    assert arrays.opacities[1, 0] == pytest.approx(0.5)
    expected_rgb = sh0_to_rgb(splats["sh0"][3, 0]).clamp(0, 1).numpy()
    np.testing.assert_allclose(arrays.rgbs[2], expected_rgb, atol=1e-6)


def test_frustums_sit_at_the_camera_centres_and_look_at_the_target() -> None:
    cameras = make_cameras(
        torch.tensor([0.0, 90.0, -150.0]),
        torch.tensor([10.0, 30.0, -5.0]),
        torch.tensor([2.5, 3.0, 2.0]),
        torch.tensor([40.0, 50.0, 60.0]),
        width=96,
        height=64,
    )
    for index, pose in enumerate(frustum_poses(cameras)):
        camtoworld = torch.linalg.inv(cameras.viewmats[index].double())
        np.testing.assert_allclose(pose.position, camtoworld[:3, 3].numpy(), atol=1e-6)
        w, x, y, z = pose.wxyz
        forward = np.array(
            [2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)]
        )  # rotation @ +z (OpenCV forward)
        np.testing.assert_allclose(forward, -pose.position / np.linalg.norm(pose.position), atol=1e-6)
        assert pose.fov == pytest.approx(math.radians(float(cameras.fovy_deg[index])), rel=1e-5)
        assert pose.aspect == pytest.approx(1.5)


def test_view_prompts_are_listed_one_per_line() -> None:
    prompts_json = {
        "prompt": "a smiling dog",
        "views": {
            "front": {
                "prompt": "a smiling dog, front view",
                "removed": [],
                "azimuth": [[-45, 45]],
                "elevation": [-90, 60],
            },
            "back": {
                "prompt": "a dog, back view",
                "removed": ["smiling"],
                "azimuth": [[135, 180], [-180, -135]],
                "elevation": [-90, 60],
            },
        },
        "pmi": {"smiling": {"front": 0.4, "back": -1.2}},
    }
    assert format_view_prompts(prompts_json).splitlines() == [
        "**a smiling dog**",
        "- **front**: a smiling dog, front view (azimuth -45..45; elevation -90..60)",
        "- **back**: a dog, back view (removed: smiling; azimuth 135..180, -180..-135; elevation -90..60)",
    ]
    assert format_view_prompts({"front": "a *bold* dog"}) == "- **front**: a \\*bold\\* dog"
    assert "No view prompts" in format_view_prompts(None)


# -- the live viewer without a browser ---------------------------------------------------------


def test_viewer_binds_loopback_by_default(tmp_path: Path) -> None:
    assert ViewerConfig().host == "127.0.0.1"
    console = quiet_console()
    with LiveViewer(ViewerConfig(port=0), tmp_path, console) as live:
        port = int(live.url.rsplit(":", 1)[1])
        assert live.url == f"http://127.0.0.1:{port}"
        assert live._server.get_host() == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    assert live.url in console_text(console) or f"127.0.0.1:{port}" in console_text(console)
    assert "Warning" not in console_text(console)


def test_non_loopback_host_prints_a_warning(tmp_path: Path) -> None:
    console = quiet_console()
    with LiveViewer(ViewerConfig(host="0.0.0.0", port=0), tmp_path, console):
        pass
    text = " ".join(console_text(console).split())
    assert "Warning" in text and "Anyone who can reach this address can see the run and control it" in text


def test_close_frees_the_port(tmp_path: Path) -> None:
    live = LiveViewer(ViewerConfig(port=0), tmp_path, quiet_console())
    port = live._server.get_port()
    assert not port_is_free(port)
    live.close()
    assert port_is_free(port)
    live.close()  # idempotent
    assert live.url == ""


def test_publish_takes_no_snapshot_until_a_push_is_due(tmp_path: Path) -> None:
    """The snapshot (a GPU -> CPU copy of every Gaussian) is the cost: publish takes one per 1 / update_hz."""
    calls = []
    splats = as_splats(marker_ball(count=100))

    def factory() -> TrainingSnapshot:
        calls.append(time.monotonic())
        return snapshot_of(splats)

    with LiveViewer(ViewerConfig(port=0, update_hz=2.0), tmp_path, quiet_console()) as live:
        started = time.perf_counter()
        for _ in range(1000):
            live.publish(factory)
        elapsed = time.perf_counter() - started
        assert 1 <= len(calls) <= 1 + math.ceil(2.0 * elapsed)
        calls_before = len(calls)
        time.sleep(0.55)
        live.publish(factory)
        assert len(calls) == calls_before + 1


def test_worker_shows_the_latest_snapshot(viewer: LiveViewer) -> None:
    cameras = evaluation_orbit(3, 64, 48)
    prompts = {"front": "a marker ball, front view"}
    viewer.publish(lambda: snapshot_of(as_splats(marker_ball(count=50)), step=7, cameras=cameras, view_prompts=prompts))
    assert viewer.flush()
    panel = viewer.panel
    assert panel.step.value == "7 / 100"
    assert panel.gaussians.value == "50"
    assert panel.truncation.value == "2.5"
    assert panel.timesteps.value == "20 .. 980"
    assert panel.progress.value == pytest.approx(7.0)
    assert "a marker ball, front view" in panel.view_prompts.content
    assert len(viewer._frustum_layer._handles) == 3
    panel.show_cameras.value = False
    assert viewer._frustum_layer._handles == []


def test_snapshot_is_copied_so_training_may_keep_mutating(viewer: LiveViewer, tmp_path: Path) -> None:
    splats = {key: value.requires_grad_(key != "shN") for key, value in as_splats(marker_ball(count=20)).items()}
    viewer.publish(lambda: snapshot_of(splats, step=3))
    assert viewer.flush()
    with torch.no_grad():
        splats["means"].add_(100.0)  # the optimiser steps in place after publish
    path = viewer.export_now()
    assert path == tmp_path / "export_step_000003.ply"
    torch.testing.assert_close(read_ply(path).means, splats["means"].detach() - 100.0)
    assert str(path) in viewer.panel.export_note.content


def test_export_button_writes_a_ply_from_the_viewer_thread(viewer: LiveViewer, tmp_path: Path) -> None:
    viewer.panel.export_button.value = True  # exactly what a click runs
    assert "Nothing to export yet" in viewer.panel.export_note.content
    target = marker_ball(count=30)
    viewer.publish(lambda: snapshot_of(as_splats(target), step=42))
    assert viewer.flush()
    viewer.panel.export_button.value = True
    exported = read_ply(tmp_path / "export_step_000042.ply")
    torch.testing.assert_close(exported.sh0, target.sh0)
    assert exported.sh_degree == 1
    assert not [path for path in tmp_path.iterdir() if ".tmp" in path.name]


def test_pause_blocks_the_loop_until_resumed(viewer: LiveViewer) -> None:
    started = time.perf_counter()
    viewer.wait_while_paused()
    assert time.perf_counter() - started < 0.01
    viewer.panel.pause_button.value = True  # a click in any tab
    assert viewer.paused and viewer.panel.pause_button.label == "Resume training"
    released = threading.Event()
    loop = threading.Thread(target=lambda: (viewer.wait_while_paused(), released.set()), daemon=True)
    loop.start()
    assert not released.wait(0.3)
    viewer.panel.pause_button.value = True
    assert released.wait(2.0)
    assert not viewer.paused and viewer.panel.pause_button.label == "Pause training"


def test_close_releases_a_paused_loop(viewer: LiveViewer) -> None:
    viewer.set_paused(True)
    released = threading.Event()
    threading.Thread(target=lambda: (viewer.wait_while_paused(), released.set()), daemon=True).start()
    assert not released.wait(0.2)
    viewer.close()
    assert released.wait(2.0)


def test_pausing_pushes_the_state_it_paused_at(viewer: LiveViewer) -> None:
    splats = as_splats(marker_ball(count=20))
    viewer.publish(lambda: snapshot_of(splats, step=1))
    viewer.set_paused(True)
    threading.Timer(0.3, viewer.set_paused, args=(False,)).start()
    viewer.wait_while_paused(lambda: snapshot_of(splats, step=2))
    assert viewer.flush()
    assert viewer.panel.step.value == "2 / 100"


def test_viewer_errors_never_reach_training(viewer: LiveViewer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_factory() -> TrainingSnapshot:
        raise RuntimeError("factory exploded")

    for _ in range(3):
        viewer._next_push_at = 0.0
        viewer.publish(broken_factory)

    def broken_show(splats: dict[str, torch.Tensor]) -> int:
        raise ValueError("viser exploded")

    monkeypatch.setattr(viewer._splat_layer, "show", broken_show)
    for step in range(3):
        viewer._next_push_at = 0.0
        viewer.publish(lambda: snapshot_of(as_splats(marker_ball(count=10)), step=step))  # noqa: B023 (flushed at once)
        assert viewer.flush()
    text = console_text(viewer.console)
    assert text.count("factory exploded") == 1 and text.count("viser exploded") == 1
    assert viewer.errors.count == 6
    assert viewer._worker.is_alive()
    viewer.wait_while_paused()


def test_a_disabled_viewer_does_nothing(tmp_path: Path) -> None:
    live = LiveViewer(ViewerConfig(enabled=False), tmp_path, quiet_console())
    live.publish(lambda: pytest.fail("the factory must not be called"))
    live.wait_while_paused()
    assert live.url == "" and not live.flush(0.01)
    live.close()


def test_a_viewer_that_cannot_start_warns_and_lets_training_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no sockets today")

    monkeypatch.setattr("splatgen.viewer.live.start_server", refuse)
    console = quiet_console()
    live = LiveViewer(ViewerConfig(port=0), tmp_path, console)
    live.publish(lambda: pytest.fail("the factory must not be called"))
    assert live.url == "" and "no sockets today" in console_text(console)
    live.close()


def test_checkpoint_toggle_shows_last_checkpoint(viewer: LiveViewer, tmp_path: Path) -> None:
    viewer.publish(lambda: snapshot_of(as_splats(marker_ball(count=40)), step=9))
    assert viewer.flush()
    viewer.panel.source.value = CHECKPOINT
    assert "No checkpoint yet" in viewer.panel.display_note.content
    (tmp_path / "checkpoints").mkdir()
    torch.save({"step": 8, "splats": as_splats(marker_ball(count=25))}, tmp_path / "checkpoints" / "last.pt")
    viewer.panel.source.value = LIVE
    viewer.panel.source.value = CHECKPOINT
    assert "step 8, 25 Gaussians" in viewer.panel.display_note.content
    assert len(viewer._splat_layer._handle.centers) == 25
    viewer.panel.source.value = LIVE
    assert len(viewer._splat_layer._handle.centers) == 40


def test_a_failed_export_is_shown_in_the_gui_and_not_raised(
    viewer: LiveViewer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, gaussians: Gaussians) -> None:
        raise OutputError(f"cannot write {path}: no space left on device")

    monkeypatch.setattr("splatgen.viewer.live.write_ply", disk_full)
    viewer.publish(lambda: snapshot_of(as_splats(marker_ball(count=10))))
    assert viewer.flush()
    viewer.panel.export_button.value = True
    viewer.panel.export_button.value = True
    assert viewer.panel.export_note.content.startswith("Export failed: OutputError: cannot write")
    assert console_text(viewer.console).count("no space left on device") == 1


def test_a_taken_port_moves_to_the_next_free_one(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        console = quiet_console()
        with LiveViewer(ViewerConfig(port=taken), tmp_path, console) as live:
            assert live.url.startswith("http://127.0.0.1:") and not live.url.endswith(f":{taken}")
        assert f"Port {taken} is taken" in console_text(console)


def test_the_demo_runs_and_reports_its_costs() -> None:
    console = quiet_console()
    report = run_demo(DemoConfig(gaussians=200, seconds=1.0, viewer=ViewerConfig(port=0, update_hz=10.0)), console)
    assert "achieved rate" in report and "worker time per push" in report
    assert "Live viewer: http://127.0.0.1:" in console_text(console)


def test_unused_browser_connections_leave_no_traceback(viewer: LiveViewer, caplog: pytest.LogCaptureFixture) -> None:
    port = viewer._server.get_port()
    with caplog.at_level(logging.INFO, logger="websockets.server"):
        for _ in range(3):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()  # a browser's spare connection
        time.sleep(0.5)
    assert "opening handshake failed" not in caplog.text


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="update_hz"):
        ViewerConfig(update_hz=0).validate()
    with pytest.raises(ValueError, match="port"):
        ViewerConfig(port=70000).validate()


# -- serve_ply without a browser ----------------------------------------------------------------


def test_serve_ply_rejects_a_bad_file_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(BadAssetFile):
        serve_ply(bad, port=0, console=quiet_console(), block=False)


def test_serve_ply_any_sh_degree_and_close_frees_port(tmp_path: Path) -> None:
    path = tmp_path / "degree3.ply"
    write_ply(path, marker_ball(count=50).with_sh_degree(3))
    shown = serve_ply(path, port=0, console=quiet_console(), block=False)
    port = int(shown.url.rsplit(":", 1)[1])
    assert shown.gaussians.sh_degree == 3 and shown.running and not port_is_free(port)
    shown.close()
    assert port_is_free(port) and not shown.running


def test_serve_ply_blocks_until_ctrl_c_then_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "marker.ply"
    write_ply(path, marker_ball(count=50))

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(standalone.time, "sleep", interrupt)
    console = quiet_console()
    shown = serve_ply(path, port=0, console=console, block=True)
    assert not shown.running and port_is_free(int(shown.url.rsplit(":", 1)[1]))
    assert "Press Ctrl-C" in console_text(console) and "Stopping the viewer" in console_text(console)


# -- real browser -------------------------------------------------------------------------------


def dominant_side(image: np.ndarray, front_rgb: np.ndarray, back_rgb: np.ndarray) -> tuple[float, float]:
    """Fractions of drawn scene pixels closer to the asset's front colour vs its back colour."""
    region = scene_region(image).astype(np.float32)
    drawn = ~near(scene_region(image), background_color(image), 24)
    to_front = np.linalg.norm(region - front_rgb, axis=-1)
    to_back = np.linalg.norm(region - back_rgb, axis=-1)
    return float((drawn & (to_front < to_back)).mean()), float((drawn & (to_back < to_front)).mean())


def mean_color(gaussians: Gaussians, mask: torch.Tensor) -> np.ndarray:
    return (255.0 * sh0_to_rgb(gaussians.sh0[mask, 0]).clamp(0, 1).mean(dim=0)).numpy()


@browser_test
def test_browser_shows_the_marker_front_up_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "marker.ply"
    write_ply(path, marker_ball())
    with serve_ply(path, port=0, console=quiet_console(), block=False) as shown:
        image = screenshot(shown.url, tmp_path / "marker.png")
    red, blue = color_fraction(image, (230, 25, 25)), color_fraction(image, (25, 25, 230))
    assert red > 0.15 and blue < 0.002, f"front (red) {red:.3f}, back (blue) {blue:.3f}"
    rows_red = np.nonzero(near(image, (230, 25, 25), 60).any(axis=1))[0]
    rows_green = np.nonzero(near(image, (25, 204, 25), 60).any(axis=1))[0]
    assert rows_green.size and rows_green.mean() < rows_red.mean(), "+y (green) must be drawn above the front"


@browser_test
@pytest.mark.skipif(not SAMPLE_PLY.exists(), reason="assets/sample.ply not present")
def test_browser_shows_the_sample_asset_from_the_front(tmp_path: Path) -> None:
    sample = read_ply(SAMPLE_PLY)
    with serve_ply(SAMPLE_PLY, port=0, console=quiet_console(), block=False) as shown:
        image = screenshot(shown.url, tmp_path / "sample.png")
    assert scene_coverage(image) > 0.05
    front, back = dominant_side(
        image, mean_color(sample, sample.means[:, 2] > 0), mean_color(sample, sample.means[:, 2] < 0)
    )
    assert front > 5 * back, f"front-coloured {front:.3f} vs back-coloured {back:.3f} of the scene region"


@browser_test
def test_browser_shows_a_live_run_with_its_cameras(tmp_path: Path) -> None:
    with LiveViewer(ViewerConfig(port=0, update_hz=4.0), tmp_path, quiet_console()) as live:
        left_of_the_object = make_cameras(  # in view of the initial camera, clear of the ball and the GUI
            torch.tensor([-120.0, -120.0]),
            torch.tensor([-10.0, 0.0]),
            torch.tensor([2.75, 2.75]),
            torch.tensor([45.0, 45.0]),
            64,
            64,
        )
        with SimulatedTraining(live, marker_ball(), total_steps=200, cameras=left_of_the_object) as training:
            assert training.published.wait(10)
            time.sleep(0.5)
            image = assert_splats_drawn(live.url, tmp_path)
        assert live.errors.count == 0 and live.timings.count >= 2
    below_the_notification = image[200:540, :460]  # viser's orange-edged notice sits top left, the GUI on the right
    assert near(below_the_notification, FRUSTUM_COLOR, 40).sum() > 50, "training-camera frustums are not drawn"


@browser_test
def test_browser_watches_a_run_whose_viewer_lives_inside_it(tmp_path: Path) -> None:
    port = free_port()
    demo = DemoConfig(gaussians=2000, seconds=240.0, viewer=ViewerConfig(port=port, update_hz=2.0))  # a deadline
    report = assert_splats_drawn_during(
        lambda seen: run_demo(demo, quiet_console(), stop=seen), f"http://127.0.0.1:{port}", tmp_path
    )
    assert "achieved rate" in report


@browser_test
def test_two_tabs_share_one_pause_button(tmp_path: Path) -> None:
    with LiveViewer(ViewerConfig(port=0), tmp_path, quiet_console()) as live:
        live.publish(lambda: snapshot_of(as_splats(marker_ball(count=300))))
        with HeadlessChromium(live.url, (640, 480)) as first_tab, HeadlessChromium(live.url, (640, 480)) as second_tab:
            assert wait_for(lambda: first_tab.has_text("Pause training") and second_tab.has_text("Pause training"), 120)
            assert first_tab.click_button("Pause training")
            assert wait_for(lambda: live.paused) and wait_for(lambda: second_tab.has_text("Resume training"))
            assert second_tab.click_button("Resume training")
            assert wait_for(lambda: not live.paused) and wait_for(lambda: first_tab.has_text("Pause training"))


@browser_test
def test_live_viewer_of_a_real_tiny_training_run_draws_splats(tmp_path, tiny_models):
    """The smoke preset's real loop (tiny SD prior, D-SDS, densification) with its viewer on."""
    from dataclasses import replace

    from splatgen.io.config_file import from_dict, load_yaml
    from splatgen.train.config import TrainConfig
    from splatgen.train.loop import train

    port = free_port()
    config = from_dict(
        TrainConfig, load_yaml(Path(__file__).resolve().parent.parent / "splatgen" / "presets" / "smoke.yaml")
    )
    config = replace(
        config,
        prompt="a red apple",
        out=tmp_path / "run",
        steps=250,
        video_frames=0,
        background="white",
        viewer=ViewerConfig(port=port, update_hz=4.0),
    )
    result = assert_splats_drawn_during(
        lambda seen: train(config, console=Console(quiet=True), on_step=hold_last_step(seen, config.steps)),
        f"http://127.0.0.1:{port}",
        tmp_path,
    )
    assert result.steps_completed == 250


def test_view_groups_of_a_multi_view_prior_get_one_colour_each(viewer: LiveViewer) -> None:
    from splatgen.scene.cameras import OrbitSampler, sample_cameras
    from splatgen.viewer.layers import GROUP_COLORS

    cameras = sample_cameras(OrbitSampler(), 8, 64, 64, torch.Generator().manual_seed(0), views_per_group=4)
    snapshot = replace(snapshot_of(as_splats(marker_ball(count=50)), cameras=cameras), views_per_group=4)
    viewer.publish(lambda: snapshot)
    assert viewer.flush()
    colors = [tuple(handle.color) for handle in viewer._frustum_layer._handles]
    assert colors == [GROUP_COLORS[0]] * 4 + [GROUP_COLORS[1]] * 4
    viewer._next_push_at = 0.0  # the next push is due now, whatever the update rate
    viewer.publish(lambda: replace(snapshot, step=6, views_per_group=1))  # handles are reused, recoloured
    assert viewer.flush()
    assert {tuple(handle.color) for handle in viewer._frustum_layer._handles} == {FRUSTUM_COLOR}
