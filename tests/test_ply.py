"""PLY (INRIA 3DGS layout) and .splat (antimatter15) files: layout, exact round trips, bad inputs, atomicity."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch

from splatgen.errors import BadAssetFile, OutputError, SplatgenError, UnsupportedFormat
from splatgen.io import (
    NonFiniteDropped,
    atomic_path,
    atomic_write,
    export_asset,
    read_ply,
    read_splat,
    write_ply,
    write_splat,
)
from splatgen.io.splat import SPLAT_RECORD
from splatgen.scene.gaussians import SH_C0, Gaussians, num_sh_bases

KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")

# The vertex properties of INRIA's `save_ply` (gaussian_model.py `construct_list_of_attributes`), SH degree 1.
INRIA_PROPERTIES_SH1 = [
    "x",
    "y",
    "z",
    "nx",
    "ny",
    "nz",
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "f_rest_0",
    "f_rest_1",
    "f_rest_2",
    "f_rest_3",
    "f_rest_4",
    "f_rest_5",
    "f_rest_6",
    "f_rest_7",
    "f_rest_8",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
]


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return Gaussians(
        randn(n, 3), randn(n, 3) - 3, randn(n, 4), randn(n), randn(n, 1, 3), randn(n, num_sh_bases(degree) - 1, 3)
    )


def assert_bit_exact(actual: Gaussians, expected: Gaussians) -> None:
    for key in KEYS:
        a, e = getattr(actual, key), getattr(expected, key)
        assert a.dtype == torch.float32 and a.shape == e.shape, key
        assert torch.equal(a.contiguous().view(torch.int32), e.contiguous().view(torch.int32)), key


def vertex_names(path: Path) -> list[str]:
    return [prop.name for prop in plyfile.PlyData.read(str(path))["vertex"].properties]


def write_vertex_ply(path: Path, columns: dict[str, np.ndarray], extra_elements: list[plyfile.PlyElement] = ()) -> None:
    """A PLY built by hand with plyfile, one float32 property per column."""
    count = len(next(iter(columns.values()))) if columns else 0
    records = np.empty(count, dtype=[(name, "f4") for name in columns])
    for name, values in columns.items():
        records[name] = values
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex"), *extra_elements]).write(str(path))


def inria_columns(n: int, rest_count: int, normals: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals else []) + ["f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(rest_count)] + [
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    return {name: rng.standard_normal(n).astype(np.float32) for name in names}


# ---- layout -------------------------------------------------------------------------------------


def test_header_matches_inria_layout(tmp_path: Path) -> None:
    path = tmp_path / "a.ply"
    write_ply(path, random_gaussians(5, 1))
    data = plyfile.PlyData.read(str(path))
    assert vertex_names(path) == INRIA_PROPERTIES_SH1
    assert [element.name for element in data.elements] == ["vertex"]
    assert all(prop.val_dtype == "f4" for prop in data["vertex"].properties)
    assert path.read_bytes().startswith(
        b"ply\nformat binary_little_endian 1.0\ncomment splatgen frame inria (-y up)\nelement vertex 5\n"
    )


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_property_order_every_degree(tmp_path: Path, degree: int) -> None:
    path = tmp_path / "a.ply"
    write_ply(path, random_gaussians(3, degree))
    rest = [f"f_rest_{i}" for i in range(3 * (num_sh_bases(degree) - 1))]
    expected = INRIA_PROPERTIES_SH1[:9] + rest + INRIA_PROPERTIES_SH1[-8:]
    assert vertex_names(path) == expected


def test_values_land_in_the_right_columns(tmp_path: Path) -> None:
    """f_rest is channel-major (all R coefficients, then G, then B), as INRIA's save_ply writes it."""
    shN = torch.tensor([[[100.0 * c + k for c in range(3)] for k in range(3)]])  # [1, 3, 3]: shN[0, k, c] = 100 c + k
    gaussians = Gaussians(
        means=torch.tensor([[1.0, 2.0, 3.0]]),
        scales=torch.tensor([[-1.0, -2.0, -3.0]]),
        quats=torch.tensor([[0.5, 0.1, 0.2, 0.3]]),
        opacities=torch.tensor([0.25]),
        sh0=torch.tensor([[[7.0, 8.0, 9.0]]]),
        shN=shN,
    )
    path = tmp_path / "a.ply"
    write_ply(path, gaussians, frame="opengl")  # the identity frame: values land as given
    row = plyfile.PlyData.read(str(path))["vertex"].data[0]
    assert [row[f"f_rest_{i}"] for i in range(9)] == [0, 1, 2, 100, 101, 102, 200, 201, 202]
    assert [row[name] for name in ("x", "y", "z", "nx", "ny", "nz")] == [1, 2, 3, 0, 0, 0]
    assert [row[name] for name in ("f_dc_0", "f_dc_1", "f_dc_2")] == [7, 8, 9]
    assert row["opacity"] == np.float32(0.25)
    assert [row[f"scale_{i}"] for i in range(3)] == [-1, -2, -3]
    assert [row[f"rot_{i}"] for i in range(4)] == [np.float32(v) for v in (0.5, 0.1, 0.2, 0.3)]
    assert torch.equal(read_ply(path).shN, shN)


# ---- round trips and reading other writers' files ------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path: Path, degree: int) -> None:
    gaussians = random_gaussians(64, degree, seed=degree)
    gaussians.means[0] = torch.tensor([-0.0, 1e-40, 3.4e38])  # signed zero, a subnormal, near float32 max
    path = tmp_path / "a.ply"
    report = write_ply(path, gaussians)
    assert (report.written, report.dropped, report.sh_degree) == (64, 0, degree)
    assert_bit_exact(read_ply(path), gaussians)


def test_sh_degree_argument_drops_or_pads_bands(tmp_path: Path) -> None:
    gaussians = random_gaussians(10, 3)
    write_ply(tmp_path / "low.ply", gaussians, sh_degree=1)
    low = read_ply(tmp_path / "low.ply")
    assert low.sh_degree == 1 and torch.equal(low.shN, gaussians.shN[:, :3])
    write_ply(tmp_path / "high.ply", low, sh_degree=2)
    high = read_ply(tmp_path / "high.ply")
    assert high.sh_degree == 2 and torch.equal(high.shN[:, :3], low.shN) and not high.shN[:, 3:].any()
    with pytest.raises(SplatgenError, match="SH degree"):
        write_ply(tmp_path / "bad.ply", gaussians, sh_degree=4)


def test_reads_inria_written_file_sh3(tmp_path: Path) -> None:
    """Build the file the way INRIA's save_ply does: tensors -> concatenated attributes -> plyfile."""
    n = 20
    expected = random_gaussians(n, 3, seed=7)
    normals = np.zeros((n, 3), dtype=np.float32)
    f_dc = expected.sh0.transpose(1, 2).flatten(start_dim=1).numpy()  # [N, 3]
    f_rest = expected.shN.transpose(1, 2).flatten(start_dim=1).numpy()  # [N, 45]
    opacities = expected.opacities[:, None].numpy()  # [N, 1]
    attributes = np.concatenate(
        (expected.means.numpy(), normals, f_dc, f_rest, opacities, expected.scales.numpy(), expected.quats.numpy()),
        axis=1,
    )
    names = INRIA_PROPERTIES_SH1[:9] + [f"f_rest_{i}" for i in range(45)] + INRIA_PROPERTIES_SH1[-8:]
    elements = np.empty(n, dtype=[(name, "f4") for name in names])
    elements[:] = list(map(tuple, attributes))
    path = tmp_path / "inria.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(elements, "vertex")]).write(str(path))
    assert_bit_exact(read_ply(path, keep_file_frame=True), expected)


def test_reads_file_without_normals_and_with_extra_properties(tmp_path: Path) -> None:
    columns = inria_columns(6, 9, normals=False)
    columns["confidence"] = np.arange(6, dtype=np.float32)
    columns = {"red": np.ones(6, dtype=np.float32), **columns}  # an unknown property before x
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "extra.ply"
    write_vertex_ply(path, columns, [plyfile.PlyElement.describe(faces, "face")])
    gaussians = read_ply(path, keep_file_frame=True)
    assert len(gaussians) == 6 and gaussians.sh_degree == 1
    assert np.array_equal(gaussians.opacities.numpy(), columns["opacity"])
    assert np.array_equal(gaussians.shN[:, 2, 1].numpy(), columns["f_rest_5"])  # G channel, third coefficient
    assert np.array_equal(gaussians.quats[:, 0].numpy(), columns["rot_0"])


def test_reads_ascii_ply(tmp_path: Path) -> None:
    path = tmp_path / "ascii.ply"
    columns = inria_columns(3, 0)
    records = np.empty(3, dtype=[(name, "f4") for name in columns])
    for name, values in columns.items():
        records[name] = values
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")], text=True).write(str(path))
    assert np.allclose(read_ply(path, keep_file_frame=True).means[:, 1].numpy(), columns["y"])


# ---- bad input files ----------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    write_ply(path, random_gaussians(10, 1))
    path.write_bytes(path.read_bytes()[:-37])


def _truncated_header(path: Path) -> None:
    write_ply(path, random_gaussians(10, 1))
    path.write_bytes(path.read_bytes()[:150])


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))


def _ply_magic_then_garbage(path: Path) -> None:
    path.write_bytes(b"ply\n" + bytes(range(256)) * 8)


def _text(path: Path) -> None:
    path.write_text("name,x,y,z\nfoo,1,2,3\n")


def _missing_opacity(path: Path) -> None:
    columns = inria_columns(4, 0)
    del columns["opacity"]
    write_vertex_ply(path, columns)


def _wrong_rest_count(path: Path) -> None:
    write_vertex_ply(path, inria_columns(4, 12))


def _zero_vertices(path: Path) -> None:
    write_vertex_ply(path, {name: values[:0] for name, values in inria_columns(4, 9).items()})


def _no_vertex_element(path: Path) -> None:
    plyfile.PlyData([plyfile.PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "points")]).write(str(path))


def _missing(path: Path) -> None:
    pass


@pytest.mark.parametrize(
    "make, expected",
    [
        (_truncated, "truncated"),
        (_truncated_header, "truncated"),
        (_garbage, "not a PLY"),
        (_ply_magic_then_garbage, "corrupt PLY header"),
        (_text, "not a PLY"),
        (_missing_opacity, "missing vertex properties: opacity"),
        (_wrong_rest_count, "12 f_rest"),
        (_zero_vertices, "0 Gaussians"),
        (_no_vertex_element, "no 'vertex' element"),
        (_missing, "no such file"),
    ],
)
def test_bad_files_raise_one_line_bad_asset_file(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / f"{make.__name__.strip('_')}.ply"
    make(path)
    with pytest.raises(BadAssetFile) as caught:
        read_ply(path)
    message = str(caught.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_directory_is_not_a_ply(tmp_path: Path) -> None:
    with pytest.raises(BadAssetFile, match="not a file"):
        read_ply(tmp_path)


# ---- writing: non-finite rows, atomicity ----------------------------------------------------------


def test_nonfinite_rows_are_dropped_and_reported(tmp_path: Path) -> None:
    gaussians = random_gaussians(10, 2)
    gaussians.means[1, 0] = float("nan")
    gaussians.shN[4, 7, 2] = float("inf")
    gaussians.opacities[9] = -float("inf")
    path = tmp_path / "a.ply"
    with pytest.warns(NonFiniteDropped, match="dropped 3 of 10"):
        report = write_ply(path, gaussians)
    assert (report.written, report.dropped) == (7, 3)
    assert "dropped 3" in report.summary()
    keep = torch.tensor([i not in (1, 4, 9) for i in range(10)])
    assert_bit_exact(read_ply(path), gaussians.select(keep))
    assert np.isfinite(plyfile.PlyData.read(str(path))["vertex"].data["opacity"]).all()


def test_failed_writes_leave_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "asset.ply"
    path.write_bytes(b"previous bytes")
    all_nan = random_gaussians(3, 0)
    all_nan.means[:] = float("nan")
    with pytest.raises(SplatgenError, match="nothing to write"):
        write_ply(path, all_nan)
    with pytest.raises(SplatgenError, match="nothing to write"):
        write_splat(path, all_nan)

    def broken_write(self, stream):
        stream.write(b"ply\nformat binary_little_endian 1.0\n")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(plyfile.PlyData, "write", broken_write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_ply(path, random_gaussians(3, 0))
    assert path.read_bytes() == b"previous bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asset.ply"]  # no temporary files left


def test_unwritable_output_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as caught:
        write_ply(blocker / "a.ply", random_gaussians(2, 0))
    assert "a.ply" in str(caught.value) and "\n" not in str(caught.value)


def test_atomic_helpers(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "video.mp4"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.suffix == ".mp4" and temporary.exists()
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(KeyError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise KeyError("interrupted")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["video.mp4"]


# ---- .splat -----------------------------------------------------------------------------------


def reference_splat_bytes(ply_path: Path) -> bytes:
    """antimatter15/splat convert.py's per-vertex loop, restated for the test."""
    vertex = plyfile.PlyData.read(str(ply_path))["vertex"]
    order = np.argsort(
        -np.exp(vertex["scale_0"] + vertex["scale_1"] + vertex["scale_2"]) / (1 + np.exp(-vertex["opacity"]))
    )
    chunks = []
    for index in order:
        v = vertex[index]
        rot = np.array([v["rot_0"], v["rot_1"], v["rot_2"], v["rot_3"]], dtype=np.float32)
        color = np.array(
            [
                0.5 + SH_C0 * v["f_dc_0"],
                0.5 + SH_C0 * v["f_dc_1"],
                0.5 + SH_C0 * v["f_dc_2"],
                1 / (1 + np.exp(-v["opacity"])),
            ]
        )
        chunks += [
            np.array([v["x"], v["y"], v["z"]], dtype=np.float32).tobytes(),
            np.exp(np.array([v["scale_0"], v["scale_1"], v["scale_2"]], dtype=np.float32)).tobytes(),
            (color * 255).clip(0, 255).astype(np.uint8).tobytes(),
            ((rot / np.linalg.norm(rot)) * 128 + 128).clip(0, 255).astype(np.uint8).tobytes(),
        ]
    return b"".join(chunks)


def test_splat_matches_reference_converter(tmp_path: Path) -> None:
    gaussians = random_gaussians(200, 1, seed=3)
    write_ply(tmp_path / "a.ply", gaussians)
    report = write_splat(tmp_path / "a.splat", gaussians)
    assert SPLAT_RECORD.itemsize == 32
    data = (tmp_path / "a.splat").read_bytes()
    assert len(data) == 32 * 200 == 32 * report.written
    ours = np.frombuffer(data, dtype=SPLAT_RECORD)
    reference = np.frombuffer(reference_splat_bytes(tmp_path / "a.ply"), dtype=SPLAT_RECORD)
    assert np.array_equal(ours["position"], reference["position"])  # same order
    assert np.array_equal(ours["scale"], reference["scale"])
    for field in ("rgba", "rotation"):  # vectorised float32 exp/norm may differ from scalar by an ulp
        assert np.abs(ours[field].astype(int) - reference[field].astype(int)).max() <= 1


def test_splat_decodes_within_quantisation(tmp_path: Path) -> None:
    gaussians = random_gaussians(100, 0, seed=4)
    gaussians.sh0.clamp_(-1.7, 1.7)  # rgb inside [0, 1], no clipping
    gaussians.quats[0] = 0.0  # degenerate rotation must not produce NaN bytes
    path = tmp_path / "a.splat"
    write_splat(path, gaussians)
    decoded = read_splat(path)
    importance = torch.exp(gaussians.scales.sum(dim=1)) * torch.sigmoid(gaussians.opacities)
    expected = gaussians.select(torch.argsort(importance, descending=True))
    assert torch.equal(decoded.means, expected.means)
    torch.testing.assert_close(decoded.scales, expected.scales, rtol=0, atol=1e-5)
    rgb = lambda g: 0.5 + SH_C0 * g.sh0[:, 0]  # noqa: E731
    difference = rgb(expected) - rgb(decoded)  # truncation: decoded is at most one step below
    assert difference.min() >= -1e-6 and difference.max() < 1 / 255 + 1e-6
    alpha_difference = torch.sigmoid(expected.opacities) - torch.sigmoid(decoded.opacities)
    assert alpha_difference.abs().max() < 1 / 255 + 1e-6
    unit = torch.nn.functional.normalize(expected.quats, dim=1)
    valid = expected.quats.norm(dim=1) > 0
    assert (unit - decoded.quats)[valid].abs().max() <= 1 / 128 + 1e-6


def test_splat_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.splat"
    path.write_bytes(b"\0" * 33)
    with pytest.raises(BadAssetFile, match="bad.splat"):
        read_splat(path)
    with pytest.raises(BadAssetFile, match="no such file"):
        read_splat(tmp_path / "missing.splat")


# ---- export ------------------------------------------------------------------------------------


def test_export_asset(tmp_path: Path) -> None:
    source = tmp_path / "in.ply"
    gaussians = random_gaussians(30, 3)
    gaussians.scales[5, 1] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteDropped)
        write_ply(source, gaussians)
    summary = export_asset(source, tmp_path / "out.ply", sh_degree=1)
    assert "29 Gaussians" in summary and "SH degree 1" in summary
    assert read_ply(tmp_path / "out.ply").sh_degree == 1
    summary = export_asset(source, tmp_path / "out.SPLAT", sh_degree=2)
    assert "ignored" in summary and (tmp_path / "out.SPLAT").stat().st_size == 29 * 32
    with pytest.raises(UnsupportedFormat, match=r"'\.obj'"):
        export_asset(tmp_path / "missing.ply", tmp_path / "out.obj")  # the suffix is checked first
    with pytest.raises(BadAssetFile, match="missing.ply"):
        export_asset(tmp_path / "missing.ply", tmp_path / "out.splat")
