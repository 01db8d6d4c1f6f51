"""Anomaly maps (issue #25 item 2): the map, its measures, the lesion-mask rule and `denoise anomaly`."""

import csv

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import tree_hash, write_dicom_slices

from denoise import load_model
from denoise.anomaly import anomaly_map, anomaly_measures, best_dice
from denoise.bench_anomaly import carry_mask, flair_lesion_mask
from denoise.cli import main
from denoise.io import read_scan


def _phantom_with_blob(seed=0):
    """A smooth ellipse (60) with a small bright blob (+40) and mild noise, and the blob's mask."""
    yy, xx = np.mgrid[:128, :128]
    img = np.where((yy - 64) ** 2 / 50**2 + (xx - 64) ** 2 / 40**2 < 1, 60.0, 0.0)
    blob = (yy - 60) ** 2 + (xx - 70) ** 2 < 16
    img[blob] += 40
    img += np.random.default_rng(seed).normal(0, 1, img.shape)
    return img.astype(np.float32), blob


@pytest.mark.parametrize("name, score", [("sparse-mr-2d", "residual"), ("vae-mr-2d", "residual"), ("vae-mr-2d", "kl"),
                                         (None, "zscore")])
def test_an_inserted_bright_blob_ranks_above_the_rest(name, score):
    img, blob = _phantom_with_blob()
    model = load_model(name, device="cpu") if name else None
    amap = anomaly_map(img, model, score=score, polarity="bright")
    assert amap.shape == img.shape and amap.dtype == np.float32 and amap.min() >= 0
    m = anomaly_measures(amap, blob)
    assert m["auroc"] > 0.9
    assert m["auprc"] > m["lesion_fraction"]  # better than chance
    assert amap[blob].mean() > 3 * amap[~blob].mean()


def test_polarity_selects_the_sign_and_the_background_is_zero():
    img, blob = _phantom_with_blob()
    dark = img.copy()
    dark[blob] -= 80  # the blob now darker than the ellipse
    bright_map = anomaly_map(dark, None, score="zscore", polarity="bright", smooth=0)
    dark_map = anomaly_map(dark, None, score="zscore", polarity="dark", smooth=0)
    assert dark_map[blob].mean() > bright_map[blob].mean()
    assert np.all(anomaly_map(img, None, score="zscore")[:3, :3] == 0)  # outside the foreground


def test_kl_needs_a_vae_and_residual_needs_a_model():
    img, _ = _phantom_with_blob()
    with pytest.raises(ValueError, match="VAE"):
        anomaly_map(img, load_model("sparse-mr-2d", device="cpu"), score="kl")
    with pytest.raises(ValueError, match="model"):
        anomaly_map(img, None, score="residual")
    with pytest.raises(ValueError, match="score"):
        anomaly_map(img, None, score="nope")


def test_best_dice_matches_a_brute_force_threshold_sweep():
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.2
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # ties on purpose
    dice, thr = best_dice(scores, labels)
    brute = max(2 * np.sum((scores >= t) & labels) / (np.sum(scores >= t) + labels.sum()) for t in np.unique(scores))
    assert dice == pytest.approx(brute)
    pred = scores >= thr
    assert 2 * np.sum(pred & labels) / (pred.sum() + labels.sum()) == pytest.approx(dice)


def test_measures_of_a_perfect_and_an_inverted_map():
    labels = np.zeros((20, 20), bool)
    labels[5:9, 5:9] = True
    perfect = anomaly_measures(labels.astype(float) + 0.0, labels)
    inverted = anomaly_measures(1.0 - labels, labels)
    assert perfect["auroc"] == pytest.approx(1.0) and perfect["best_dice"] == pytest.approx(1.0)
    assert inverted["auroc"] < 0.01 and inverted["auprc"] < perfect["auprc"]
    region = np.zeros_like(labels)
    region[:10, :10] = True  # measured only inside the region
    assert anomaly_measures(labels.astype(float), labels, region)["lesion_fraction"] == pytest.approx(16 / 100)


def test_lesion_mask_rule_finds_bright_white_matter_spots_not_the_scalp():
    """A synthetic head: scalp ring (bright), dark skull, brain (WM 100, GM ring 120), three bright spots."""
    z, n = 12, 160
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    sl = np.where(r < 70, 100.0, 0.0) + np.where((r > 60) & (r < 70), 20.0, 0.0)
    sl += np.where((r > 74) & (r < 78), 150.0, 0.0)  # scalp, bright, outside the dark skull gap
    vol = np.repeat(sl[None], z, 0) + np.random.default_rng(0).normal(0, 2, (z, n, n))
    spots = np.zeros(vol.shape, bool)
    for cy, cx in [(70, 70), (90, 80), (75, 95)]:
        spots[4:8] |= ((yy - cy) ** 2 + (xx - cx) ** 2 < 9)[None]
    vol[spots] += 60
    lesions, region = flair_lesion_mask(vol.astype(np.float32))
    assert (lesions & spots).sum() > 0.8 * spots.sum()
    assert (lesions & ~spots).sum() < 0.2 * spots.sum()
    assert not region[:, r > 72].any()  # the scalp is not part of the scored brain


def test_carry_mask_follows_the_affines():
    m = np.zeros((6, 20, 20), bool)
    m[2:4, 5:9, 10:14] = True
    assert np.array_equal(carry_mask(m, np.eye(4), m.shape, np.eye(4)), m)
    shifted = np.eye(4)
    shifted[0, 3] = 3.0  # the target's voxel x=0 lies at world x=3: the mask moves 3 voxels left
    moved = carry_mask(m, np.eye(4), m.shape, shifted)
    assert np.array_equal(moved[:, :, 7:11], m[:, :, 10:14]) and moved.sum() == m.sum()


def test_anomaly_cli_writes_maps_at_mirrored_paths_and_never_touches_inputs(tmp_path, phantom_3d, capsys):
    src = tmp_path / "in"
    write_dicom_slices(src / "mr", (phantom_3d[:6] + 50).astype(np.float32))
    nib.save(nib.Nifti1Image((phantom_3d[:6] + 50).T.copy(), np.eye(4)), str(src / "v.nii.gz"))
    before = tree_hash(src)
    out = tmp_path / "out"
    assert main(["anomaly", "-i", str(src), "-o", str(out), "-m", "sparse-mr-2d", "--polarity", "bright", "--quiet"]) == 0
    assert tree_hash(src) == before
    rows = {r["input"]: r for r in csv.DictReader(open(out / "manifest.csv"))}
    assert {r["status"] for r in rows.values()} == {"ok"} and {r["anomaly"] for r in rows.values()} == {"residual:bright"}
    nifti = read_scan(out / rows["v.nii.gz"]["output"]).array
    expected = anomaly_map(read_scan(src / "v.nii.gz").array, load_model("sparse-mr-2d", device="cpu"), polarity="bright")
    np.testing.assert_allclose(nifti, expected, atol=1e-4 * float(expected.max()) + 1e-6)
    dcm_row = next(r for k, r in rows.items() if k.startswith("mr"))
    ds = pydicom.dcmread(str(sorted((out / dcm_row["output"]).glob("*.dcm"))[0]))
    assert "anomaly" in ds.SeriesDescription and "RESEARCH" in ds.SeriesDescription.upper()
    src_number = pydicom.dcmread(str(sorted((src / "mr").glob("*.dcm"))[0])).get("SeriesNumber", 0)
    assert int(ds.SeriesNumber) == int(src_number) + 4000
    # --continue reuses rows of the same score; another polarity redoes them
    stamp = rows["v.nii.gz"]["output_stamp"]
    assert main(["anomaly", "-i", str(src), "-o", str(out), "-m", "sparse-mr-2d", "--polarity", "bright", "--continue",
                 "--quiet"]) == 0
    assert next(r for r in csv.DictReader(open(out / "manifest.csv")) if r["input"] == "v.nii.gz")["output_stamp"] == stamp
    assert main(["anomaly", "-i", str(src), "-o", str(out), "-m", "sparse-mr-2d", "--continue", "--quiet"]) == 0
    again = next(r for r in csv.DictReader(open(out / "manifest.csv")) if r["input"] == "v.nii.gz")
    assert again["anomaly"] == "residual:both" and again["output_stamp"] != stamp


def test_anomaly_cli_refusals(tmp_path, phantom_3d, capsys):
    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image((phantom_3d[:4] + 50).T.copy(), np.eye(4)), str(src / "v.nii.gz"))
    ct = tmp_path / "ct"
    write_dicom_slices(ct / "s", (phantom_3d[:4] * 10 - 1000).astype(np.float32), modality="CT")
    args = ["anomaly", "-i", str(src), "-o", str(tmp_path / "o1"), "--quiet"]
    assert main([*args, "--score", "kl", "-m", "sparse-mr-2d"]) == 2
    assert "VAE" in capsys.readouterr().err
    assert main([*args, "--score", "zscore", "-m", "vae-mr-2d"]) == 2
    assert main([*args, "-m", "nlm"]) == 2
    # CT without a CT autoencoder: the scan fails with the reason (exit 1); the z-score baseline works
    assert main(["anomaly", "-i", str(ct), "-o", str(tmp_path / "o2"), "--quiet"]) == 1
    row = next(csv.DictReader(open(tmp_path / "o2" / "manifest.csv")))
    assert row["status"] == "failed" and "CT" in row["reason"]
    assert main(["anomaly", "-i", str(ct), "-o", str(tmp_path / "o3"), "--score", "zscore", "--quiet"]) == 0


def test_vae_interpolation_endpoints_decode_to_the_inputs_reconstructions():
    net = load_model("vae-mr-2d", device="cpu").net
    img, _ = _phantom_with_blob()
    a = torch.from_numpy(img / 100.0)[None, None]
    b = torch.from_numpy(np.flip(img, 1).copy() / 100.0)[None, None]
    path = net.interpolate(a, b, steps=5)
    with torch.no_grad():
        torch.testing.assert_close(path[0], net.predict(a)[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(path[-1], net.predict(b)[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(path[2], path[0])  # the middle is neither end
