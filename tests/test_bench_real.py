"""`denoise bench --real`: repeated acquisitions scored against each other (real-noise benchmark)."""

import csv

import nibabel as nib
import numpy as np
import pytest

from denoise.cli import main


def _repeats(path, clean, k, sigma, seed=0, moved=()):
    rng = np.random.default_rng(seed)
    vols = []
    for t in range(k):
        v = clean + rng.normal(0, sigma, clean.shape)
        if t in moved:  # a time point where the subject moved: not a repeat of the same anatomy
            v = np.roll(v, 3, axis=-1)
        vols.append(np.abs(v))
    nib.save(nib.Nifti1Image(np.stack(vols).T.astype(np.float32), np.eye(4)), str(path))


def test_real_bench_scores_methods_and_leaves_moved_repeats_out(tmp_path, phantom_2d, phantom_3d):
    data = tmp_path / "real"
    data.mkdir()
    clean = np.repeat(phantom_2d[None], 6, axis=0)  # (6, 64, 64): large flat regions
    _repeats(data / "mr_series.nii.gz", clean, 5, 60.0, moved=(3,))
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(data / "mr_single.nii.gz"))  # no repeats: ignored
    out = tmp_path / "out"
    assert main(["bench", "--real", str(data), "--out", str(out), "--methods", "noisy,nlm", "--quiet"]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["scan"] for r in rows} == {"mr_series.nii.gz"}
    assert rows[0]["kept"] == "0 1 2 4"  # the moved time point is left out of references and scores
    assert {r["repeat"] for r in rows} == {"0", "1", "2", "4"}
    noisy = np.mean([float(r["psnr_fg"]) for r in rows if r["method"] == "noisy"])
    smooth = np.mean([float(r["psnr_fg"]) for r in rows if r["method"] == "nlm"])
    assert smooth > noisy + 1.0  # white noise on a piecewise-constant phantom: smoothing helps
    peak = float(rows[0]["data_range"])
    assert abs(float(rows[0]["noise_sigma"]) * peak / 60.0 - 1) < 0.1  # the repeats' noise, not the motion
    assert "| nlm |" in (out / "results.md").read_text()


def test_real_bench_needs_repeats_and_one_mode(tmp_path, phantom_3d):
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(tmp_path / "mr.nii.gz"))
    assert main(["bench", "--real", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert main(["bench", "--out", str(tmp_path / "o")]) == 2
    assert main(["bench", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_real_bench_scores_a_model_blended_with_the_input(tmp_path, phantom_2d):
    """``dae:mr-2d:strengthS`` is ``run --strength S``: strength 0 scores as the input itself, 1 as
    the model alone; a strength outside [0, 1] is refused before anything runs."""
    from denoise.bench import method_strength
    from denoise.outdir import UsageError

    data = tmp_path / "real"
    data.mkdir()
    _repeats(data / "mr_series.nii.gz", np.repeat(phantom_2d[None], 4, axis=0), 3, 40.0, seed=2)
    out = tmp_path / "out"
    methods = "noisy,dae:mr-2d,dae:mr-2d:strength0,dae:mr-2d:strength1,dae:mr-2d:strength0.5+noisescale0.9"
    assert main(["bench", "--real", str(data), "--out", str(out), "--methods", methods, "--quiet"]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by = {(r["method"], r["repeat"]): float(r["psnr_fg"]) for r in rows}
    for k in ("0", "1", "2"):
        assert by[("dae:mr-2d:strength0", k)] == by[("noisy", k)]
        assert by[("dae:mr-2d:strength1", k)] == by[("dae:mr-2d", k)]
        assert by[("dae:mr-2d:strength0.5+noisescale0.9", k)] != by[("dae:mr-2d", k)]
    assert method_strength("dae:mr-2d:strength0.5+noisescale0.9") == 0.5 and method_strength("nlm") == 1.0
    with pytest.raises(UsageError, match="strength"):
        from denoise.methods import bench_methods

        bench_methods(["mr-2d:strength2"])
