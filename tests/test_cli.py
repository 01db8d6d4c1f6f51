import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SAMPLE, tree_hash, write_dicom_slices

from denoise.checkpoint import load_checkpoint
from denoise.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    capsys.readouterr()
    assert main(["run"]) == 2  # missing -i/-o
    assert "-i" in capsys.readouterr().err
    assert main(["simulate", "-i", "x", "-o", "y", "--noise", "salt:1"]) == 2
    err = capsys.readouterr().err
    assert "bad noise spec 'salt:1'" in err and "rician:LEVEL" in err  # names the bad value and the valid forms


def test_info_lists_series_without_patient_names(tmp_path, phantom_3d, capsys):
    write_dicom_slices(tmp_path / "d", phantom_3d)
    (tmp_path / "d" / "readme.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "16x24x24" in out and "MR" in out and "skipped" in out
    assert "Doe" not in out and "PID12345" not in out


def test_simulate_then_evaluate_round_trip(tmp_path, phantom_3d, capsys):
    src = tmp_path / "clean"
    write_dicom_slices(src / "series", phantom_3d)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(src / "vol.nii.gz"))
    before = tree_hash(src)
    assert main(["simulate", "-i", str(src), "-o", str(tmp_path / "noisy"), "--noise", "rician:0.05", "--seed", "1"]) == 0
    assert tree_hash(src) == before
    a = nib.load(str(tmp_path / "noisy" / "vol.nii.gz")).get_fdata()
    assert main(["simulate", "-i", str(src), "-o", str(tmp_path / "noisy2"), "--noise", "rician:0.05", "--seed", "1"]) == 0
    np.testing.assert_array_equal(a, nib.load(str(tmp_path / "noisy2" / "vol.nii.gz")).get_fdata())
    assert not np.array_equal(a, phantom_3d.T)
    capsys.readouterr()
    assert main(["evaluate", "--denoised", str(tmp_path / "noisy"), "--reference", str(src)]) == 0
    out = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"psnr=([\d.]+)", out)]
    assert len(values) == 2 and all(15 < v < 60 for v in values)
    assert (tmp_path / "noisy" / "evaluation.csv").exists()


def test_readme_test_line_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [ln for ln in readme.splitlines() if "pytest" in ln and ln.startswith("python -m venv")]
    assert len(lines) == 1 and lines[0] in ci


@pytest.mark.skipif(not SAMPLE.exists(), reason="no sample data")
def test_sample_data_is_readable():
    from denoise.io import discover_scans

    scans, skipped = discover_scans(SAMPLE)
    kinds = {(s.kind, s.load().modality) for s in scans}
    assert ("dicom", "CT") in kinds and ("nifti", "MR") in kinds and ("dicom", "MR") in kinds
    assert [s.relpath for s in skipped] == ["SOURCES.md"]


def test_train_cli_with_yaml_config(tmp_path, tiny_training_set):
    data, cfg = tiny_training_set
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "dae", "--dims", "2", "--noise", "rician:0.05",
                 "--out", str(out), "--config", str(cfg), "--epochs", "2", "--steps-per-epoch", "3", "--quiet",
                 "--device", "cpu"]) == 0
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert load_checkpoint(out / "last.pt")[1]["noise"] == "rician:0.05"  # the option beats the config
    # without --noise the config's noise applies, not the CLI's default
    noisy_cfg = tmp_path / "noise.yaml"
    noisy_cfg.write_text(cfg.read_text().replace("train:\n", "train:\n  noise: gaussian:0.07\n"))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "n"), "--config", str(noisy_cfg),
                 "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    assert load_checkpoint(tmp_path / "n" / "last.pt")[1]["noise"] == "gaussian:0.07"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 1\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--config", str(bad)]) == 2


def test_train_cli_fine_tunes_a_checkpoint(tmp_path, tiny_training_set):
    data, cfg = tiny_training_set
    first = tmp_path / "first"
    assert main(["train", "--data", str(data), "--out", str(first), "--config", str(cfg), "--noise", "gaussian:0.05",
                 "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--device", "cpu"]) == 0
    start, start_info, _ = load_checkpoint(first / "last.pt")
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--out", str(out),
                 "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--device", "cpu"]) == 0
    tuned, info, _ = load_checkpoint(out / "last.pt")
    # architecture, scaling, patch size and noise come from the checkpoint; fine-tuning learning rate
    assert info["model"] == start_info["model"] and info["normalization"] == start_info["normalization"]
    assert info["train"]["patch_size"] == 16 and info["noise"] == "gaussian:0.05" and info["train"]["lr"] == 1e-4
    assert info["init"] == "first/last.pt" and info["data"]["fine_tuned_from"] == "first"
    moved = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values())]
    assert any(moved)
    # a config's model section changes the checkpoint's architecture: here a wider DAE grown from it
    grow = tmp_path / "grow.yaml"
    grow.write_text("model:\n  channels: [6, 8]\n")
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--config", str(grow),
                 "--out", str(tmp_path / "wide"), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    _, wide, _ = load_checkpoint(tmp_path / "wide" / "last.pt")
    assert wide["model"] == {**start_info["model"], "channels": [6, 8]}
    # ... or turns the 2D DAE into its slice-preserving 3D form
    slab = tmp_path / "slab.yaml"
    slab.write_text("model:\n  spatial_dims: 3\n  slab: true\n  depth_levels: 1\ntrain:\n  patch_depth: 4\n  batch_size: 2\n")
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--config", str(slab),
                 "--out", str(tmp_path / "slab"), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    _, slab_info, _ = load_checkpoint(tmp_path / "slab" / "last.pt")
    assert slab_info["model"] == {**start_info["model"], "spatial_dims": 3, "slab": True, "depth_levels": 1}
    # a CT model cannot be fine-tuned on MR scans (its intensity scaling would be wrong), nor a 2D model as 3D
    assert main(["train", "--data", str(data), "--init", "ct-2d", "--out", str(tmp_path / "x"), "--quiet",
                 "--device", "cpu"]) == 2
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--dims", "3",
                 "--out", str(tmp_path / "y"), "--quiet", "--device", "cpu"]) == 2


def test_train_cli_needs_a_modality_for_a_mixed_folder_and_defaults_the_noise_to_it(tmp_path, tiny_training_set, phantom_3d):
    """A folder with CT and MR scans is refused without --modality (one model, one intensity scale
    and noise physics); with it, the other modality is left out of training, and without --noise
    the noise suits the modality (Rician for MR, sinogram low-dose for CT), never Rician on HU."""
    data, cfg = tiny_training_set
    for i in range(2):  # CT volumes in HU: air around a water-like body
        nib.save(nib.Nifti1Image((phantom_3d - 1000.0 + 10 * i).T.copy(), np.eye(4)), str(data / f"c{i}_ct.nii.gz"))
    common = ["--config", str(cfg), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "mixed"), *common]) == 2
    assert not (tmp_path / "mixed" / "last.pt").exists()
    for modality, noise, scaling in [("MR", "rician:0.01-0.09", "percentile"), ("CT", "lowdose:0.1-0.5", "window")]:
        out = tmp_path / modality
        assert main(["train", "--data", str(data), "--modality", modality, "--out", str(out), *common]) == 0
        info = load_checkpoint(out / "last.pt")[1]
        assert info["noise"] == noise and info["normalization"]["kind"] == scaling
        assert info["data"]["files"] and all(("_ct" in f) == (modality == "CT") for f in info["data"]["files"])
