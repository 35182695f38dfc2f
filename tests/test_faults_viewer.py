"""Fault suite, part 3: viewers let in only their own page (and token holders); bad inputs to
`view`, `render` and the model loaders are one line.

The websocket tests use the `websockets` client viser itself depends on, against real servers.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
import viser
from rich.console import Console
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.sync.client import connect

from splatgen.cli import main, one_line_warnings
from splatgen.io.ply import ply_property_names, write_ply
from splatgen.prompts.masked_lm import LanguageModelUnavailableError, MaskedLMViewScorer
from splatgen.scene.gaussians import Gaussians
from splatgen.viewer import LiveViewer, ViewerConfig, serve_ply
from splatgen.viewer.guard import COOKIE, HandshakeGuard
from splatgen.viewer.server import ViewerUnavailable, check_listen

QUIET = Console(file=open(os.devnull, "w"), width=120)
SUBPROTOCOL = f"viser-v{viser.__version__}"


@pytest.fixture
def asset(tmp_path) -> Path:
    count = 50
    quats = torch.zeros(count, 4)
    quats[:, 0] = 1.0
    gaussians = Gaussians(
        means=0.3 * torch.randn(count, 3, generator=torch.Generator().manual_seed(0)),
        scales=torch.full((count, 3), -3.0),
        quats=quats,
        opacities=torch.zeros(count),
        sh0=torch.zeros(count, 1, 3),
        shN=torch.zeros(count, 0, 3),
    )
    write_ply(tmp_path / "asset.ply", gaussians)
    return tmp_path / "asset.ply"


def websocket(port: int, origin: str | None, path: str = "/", headers: dict | None = None):
    return connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=origin,
        subprotocols=[SUBPROTOCOL],
        additional_headers=headers,
        open_timeout=120,
    )


def refused_status(port: int, origin: str | None, path: str = "/", headers: dict | None = None) -> int | None:
    """The HTTP status a refused handshake got, or None when it was accepted."""
    try:
        with websocket(port, origin, path, headers):
            return None
    except InvalidStatus as error:
        return error.response.status_code


def test_a_foreign_origin_cannot_open_the_ply_viewer(asset):
    with serve_ply(asset, port=0, console=QUIET, block=False) as viewer:
        port = int(viewer.url.rsplit(":", 1)[1])
        assert refused_status(port, "http://evil.example") == 403
        assert refused_status(port, f"http://evil.example:{port}") == 403
        assert refused_status(port, f"http://127.0.0.1:{port}") is None  # the viewer's own page
        assert refused_status(port, None) is None  # a local non-browser client sends no Origin


def test_a_foreign_origin_cannot_pause_a_training_run(tmp_path):
    viewer = LiveViewer(ViewerConfig(port=0), tmp_path, QUIET)
    try:
        port = int(viewer.url.rsplit(":", 1)[1])
        assert refused_status(port, "http://evil.example") == 403
        assert not viewer.paused
    finally:
        viewer.close()


def request(host: str, origin: str | None, path: str = "/", cookie: str | None = None) -> Request:
    headers = Headers({"Host": host, "Upgrade": "websocket", "Connection": "Upgrade"})
    if origin is not None:
        headers["Origin"] = origin
    if cookie is not None:
        headers["Cookie"] = cookie
    return Request(path, headers)


def test_the_guard_refuses_rebound_names_and_accepts_addresses():
    guard = HandshakeGuard()
    assert guard.refusal(request("evil.example:8080", "http://evil.example:8080")) is not None  # DNS rebinding
    assert guard.refusal(request("127.0.0.1:8080", "http://127.0.0.1:8080")) is None
    assert guard.refusal(request("localhost:8080", "http://localhost:8080")) is None
    assert guard.refusal(request("[::1]:8080", "http://[::1]:8080")) is None
    assert guard.refusal(request("192.168.1.5:8080", "http://192.168.1.5:8080")) is None  # remote by address
    assert guard.refusal(request("127.0.0.1:8080", "http://127.0.0.1:9999")) is not None  # another local page


def test_with_a_token_only_its_holders_get_in(asset):
    with serve_ply(asset, port=0, console=QUIET, block=False, token="s3cret") as viewer:
        assert viewer.url.endswith("/?token=s3cret")
        port = int(viewer.url.split(":")[2].split("/")[0])
        own = f"http://127.0.0.1:{port}"
        assert refused_status(port, own) == 403
        assert refused_status(port, own, "/?token=wrong") == 403
        assert refused_status(port, own, "/?token=s3cret") is None
        assert refused_status(port, own, headers={"Cookie": f"{COOKIE}=s3cret"}) is None
        assert http_get(port, "/")[0] == 403
        status, cookie = http_get(port, "/?token=s3cret")
        assert status == 200 and f"{COOKIE}=s3cret" in cookie


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, Set-Cookie) of one plain page load."""
    page = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        page.request("GET", path)
        response = page.getresponse()
        response.read()
        return response.status, response.getheader("Set-Cookie", "")
    finally:
        page.close()


def test_the_token_is_checked_before_anything_else():
    guard = HandshakeGuard("s3cret")
    assert "needs its token" in guard.refusal(request("evil.example:1", "http://evil.example:1"))
    assert guard.refusal(request("myhost:1", "http://myhost:1", cookie=f"{COOKIE}=s3cret")) is None


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_view_with_a_bad_port_is_one_line(asset, capsys, port):
    assert main(["view", str(asset), "--port", port]) == 2
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "--port must be in 0..65535" in printed, printed


def test_a_taken_port_moves_to_the_next_one(asset):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        check_listen("127.0.0.1", port)  # taken is not an error
        with serve_ply(asset, port=port, console=QUIET, block=False) as viewer:
            assert not viewer.url.endswith(f":{port}")


def test_an_unknown_host_is_one_line():
    with pytest.raises(ViewerUnavailable, match="cannot listen on 'no-such-host.invalid'"):
        check_listen("no-such-host.invalid", 8080)


# -- all-NaN PLY files, render output ---------------------------------------------------------


def nan_ply(path: Path, count: int = 5) -> Path:
    records = np.full(count, np.nan, dtype=[(name, "<f4") for name in ply_property_names(0)])
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(path))
    return path


def test_render_refuses_an_all_nan_ply_and_keeps_the_old_renders(tmp_path, capsys):
    out = tmp_path / "renders"
    out.mkdir()
    (out / "views.png").write_bytes(b"the previous render")
    assert main(["render", str(nan_ply(tmp_path / "nan.ply")), "--out", str(out), "--device", "cpu"]) == 2
    printed = capsys.readouterr().out
    assert "none of its 5 Gaussians is finite" in printed and printed.count("\n") == 1
    assert (out / "views.png").read_bytes() == b"the previous render"


def test_view_refuses_an_all_nan_ply(tmp_path, capsys):
    assert main(["view", str(nan_ply(tmp_path / "nan.ply")), "--port", "0"]) == 2
    assert "none of its 5 Gaussians is finite" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--frames", "100000000"], "num_frames must be in 1..3600"),
        (["--resolution", "100000"], "resolution must be in 16..4096"),
    ],
)
def test_render_refuses_huge_sizes_at_once(asset, tmp_path, capsys, flags, message):
    assert main(["render", str(asset), "--out", str(tmp_path / "r"), "--device", "cpu", *flags]) == 2
    assert message in capsys.readouterr().out and not (tmp_path / "r").exists()


def test_render_prints_a_summary_not_a_repr(asset, tmp_path, capsys):
    arguments = ["render", str(asset), "--out", str(tmp_path / "r"), "--frames", "2", "--resolution", "32"]
    assert main([*arguments, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "TurntableResult(" not in printed and "wrote " in printed and "2 frames, 32 px" in printed


def test_warnings_print_on_one_line(capsys):
    with warnings.catch_warnings():
        one_line_warnings(Console(width=200))
        warnings.warn("dropped 3 of 10 Gaussians\nholding NaN", UserWarning, stacklevel=1)
    assert capsys.readouterr().out == "warning: dropped 3 of 10 Gaussians holding NaN\n"


# -- safetensors only ---------------------------------------------------------------------------


def test_a_pickle_only_language_model_is_refused(tmp_path, tiny_models):
    folder = tmp_path / "lm"
    shutil.copytree(tiny_models["mlm"], folder)
    for weights in folder.glob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(LanguageModelUnavailableError, match="only pickled PyTorch weights .*pytorch_model.bin"):
        MaskedLMViewScorer.from_pretrained(str(folder))


def test_a_pickle_only_shap_e_is_refused(tmp_path):
    from splatgen.scene.init import ShapEInit
    from splatgen.scene.shap_e import ShapEUnavailable, shap_e_gaussians

    (tmp_path / "shap-e" / "prior").mkdir(parents=True)
    (tmp_path / "shap-e" / "prior" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(ShapEUnavailable, match="only pickled PyTorch weights"):
        shap_e_gaussians("x", ShapEInit(model=str(tmp_path / "shap-e")), 0, torch.Generator(), QUIET)
