"""Uncertainty maps: the flip spread of a learned model, and `denoise run --uncertainty`."""

import csv

import numpy as np
import pydicom
import pytest
import torch
from conftest import write_dicom_slices

from denoise.checkpoint import save_checkpoint
from denoise.cli import main
from denoise.config import ModelConfig
from denoise.infer import denoise_array, load_model
from denoise.io import read_scan
from denoise.models import ClassicalDenoiser, build_model
from denoise.uncertainty import FLIPS, flip_outputs, flip_spread


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    cfg = {"kind": "dae", "spatial_dims": 2, "channels": [4, 8], "context": 1, "noise_channel": True}
    net = build_model(ModelConfig(**cfg))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    return save_checkpoint(tmp_path / "tiny.pt", net, {"name": "tiny", "model": cfg, "normalization": {"kind": "percentile"},
                                                       "train": {"patch_size": 32}})


def _noisy(phantom_3d, seed=0):
    rng = np.random.default_rng(seed)
    return (phantom_3d[:6] + 50 + rng.normal(0, 20, phantom_3d[:6].shape)).astype(np.float32)


def test_members_are_the_flipped_outputs_flipped_back(tiny_model, phantom_3d):
    x = _noisy(phantom_3d)
    model = load_model(tiny_model, device="cpu")
    outs = list(flip_outputs(x, model))
    assert len(outs) == len(FLIPS) == 4
    assert np.array_equal(outs[0], denoise_array(x, model, guard=False))  # the network's own outputs
    for axes, out in zip(FLIPS[1:], outs[1:]):  # member k = denoise(flip(x)) flipped back
        flipped = np.ascontiguousarray(np.flip(x, axes))
        assert np.allclose(out, np.flip(denoise_array(flipped, model, guard=False), axes), atol=1e-5)


def test_spread_is_zero_for_a_flip_symmetric_filter_and_not_for_a_network(tiny_model, phantom_3d):
    """The map measures disagreement between flips: none for a 3x3 median filter (symmetric),
    some for a network (a 3x3 convolution is not flip-symmetric)."""
    x = _noisy(phantom_3d)
    median = flip_spread(x, ClassicalDenoiser("median"))
    assert float(median.max()) < 1e-4 * float(x.max())
    net = flip_spread(x, load_model(tiny_model, device="cpu"))
    assert net.shape == x.shape and net.dtype == np.float32 and (net >= 0).all()
    assert float(net.mean()) > 1e-3 * float(x.max())


def test_odd_sizes_are_padded_so_the_flips_change_the_pixel_phase(tiny_model, phantom_3d):
    """On an odd width a flip keeps every pixel's phase; padding to even makes it move, and the
    spread equals that of the padded image cropped back."""
    x = _noisy(phantom_3d)[:, :, :23]  # 24 x 23
    model = load_model(tiny_model, device="cpu")
    even = np.pad(x, [(0, 0), (0, 0), (0, 1)], mode="edge")
    assert np.allclose(flip_spread(x, model), flip_spread(even, model)[..., :23], atol=1e-4)


def test_tta_models_are_measured_without_their_own_flip_average(tiny_model, phantom_3d):
    x = _noisy(phantom_3d)
    plain = flip_spread(x, load_model(tiny_model, device="cpu"))
    tta = flip_spread(x, load_model(tiny_model, device="cpu", tta=True))
    assert np.allclose(plain, tta, atol=1e-5)


def test_run_writes_the_map_beside_each_output_and_leaves_the_output_unchanged(tiny_model, phantom_3d, tmp_path):
    src = tmp_path / "in"
    write_dicom_slices(src / "mr", _noisy(phantom_3d))
    base = ["-i", str(src), "-m", str(tiny_model), "--quiet"]
    assert main(["run", *base, "-o", str(tmp_path / "plain")]) == 0
    assert main(["run", *base, "-o", str(tmp_path / "unc"), "--uncertainty"]) == 0
    row = next(csv.DictReader(open(tmp_path / "unc" / "manifest.csv")))
    plain = next(csv.DictReader(open(tmp_path / "plain" / "manifest.csv")))
    assert row["status"] == "ok" and row["uncertainty"] == row["output"] + "_uncertainty"
    assert np.array_equal(read_scan(tmp_path / "unc" / row["output"]).array,
                          read_scan(tmp_path / "plain" / plain["output"]).array)
    written = read_scan(tmp_path / "unc" / row["uncertainty"]).array
    expected = flip_spread(read_scan(src / "mr").array, load_model(tiny_model, device="cpu"))
    # stored through a rescale: fractions of a unit survive (an integer MR layout would round them away)
    assert np.abs(written - expected).max() <= 1e-3 * float(expected.max()) + 1e-6
    assert not np.array_equal(written, np.rint(written))
    ds = pydicom.dcmread(str(sorted((tmp_path / "unc" / row["uncertainty"]).glob("*.dcm"))[0]))
    assert "uncertainty" in ds.SeriesDescription and "RESEARCH" in ds.SeriesDescription.upper()
    assert "WindowCenter" not in ds  # the source's window (for the image) would hide the map
    src_number = pydicom.dcmread(str(sorted((src / "mr").glob("*.dcm"))[0])).get("SeriesNumber", 0)
    assert int(ds.SeriesNumber) == int(src_number) + 3000


def test_continue_writes_missing_maps_and_classical_methods_are_refused(tiny_model, phantom_3d, tmp_path, capsys):
    import nibabel as nib

    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image(_noisy(phantom_3d).T.copy(), np.eye(4)), str(src / "v.nii.gz"))
    out = tmp_path / "out"
    base = ["run", "-i", str(src), "-o", str(out), "-m", str(tiny_model), "--quiet"]
    assert main(base) == 0
    assert not (out / "v_uncertainty.nii.gz").exists()
    assert main([*base, "--continue", "--uncertainty"]) == 0
    row = next(csv.DictReader(open(out / "manifest.csv")))
    assert row["uncertainty"] == "v_uncertainty.nii.gz" and (out / "v_uncertainty.nii.gz").exists()
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "o2"), "-m", "tv", "--uncertainty"]) == 2
    assert "classical" in capsys.readouterr().err
