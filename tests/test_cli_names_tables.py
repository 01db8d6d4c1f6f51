"""Issue #29 (CLI 11, 13): one vocabulary of method names for run and bench, checked before any work
and listed in --help; `models` and `info` tables that fit 80 columns; `run --continue` says what it
reused; `simulate` warns on an implausible noise level."""

import csv
import logging
import re

import nibabel as nib
import numpy as np
import pytest
from conftest import SAMPLE

from denoise import methods
from denoise.cli import main
from denoise.outdir import UsageError


def _nifti(folder, phantom_3d, name="p_mr.nii.gz"):
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(folder / name))
    return folder


def test_the_vocabulary_is_the_packages():
    from denoise.infer import PRETRAINED_DIR
    from denoise.models import CLASSICAL_METHODS

    assert methods.CLASSICAL == CLASSICAL_METHODS and methods.PRETRAINED_DIR == PRETRAINED_DIR
    assert {"mr-2d", "ct-2d"} <= set(methods.shipped_models())


def test_bench_takes_runs_names_and_keeps_its_own():
    assert methods.bench_methods(["mr-2d", "nlm", "dae:mr-2d", "vae-mr-2d", "mr-2d:tta", "median", "noisy",
                                  "nlm:oracle", "mr-3d:oracle+1plane"]) == [
        "dae:mr-2d", "nlm", "vae:vae-mr-2d", "dae:mr-2d:tta", "median", "noisy", "nlm:oracle", "dae:mr-3d:oracle+1plane"]
    with pytest.raises(UsageError) as info:
        methods.bench_methods(["nlm", "mr2d", "tv:tta", "mr-2d:fast"])
    text = str(info.value)
    assert "'mr2d'" in text and "'tv:tta'" in text and "'mr-2d:fast'" in text  # every bad name at once
    assert all(n in text for n in (*methods.CLASSICAL, *methods.shipped_models()))  # and the valid ones


def test_run_takes_the_benchs_model_form():
    assert methods.run_model("dae:mr-2d") == "mr-2d" and methods.run_model("nlm") == "nlm"
    assert methods.run_model("some/model.pt") == "some/model.pt" and methods.run_model(None) is None
    for bad, says in (("nml", "unknown model or method"), ("nlm:oracle", "estimates the noise itself"),
                      ("dae:mr-2d:tta", "--tta"), ("noisy", "bench` method only")):
        with pytest.raises(UsageError, match=re.escape(says)):
            methods.run_model(bad)


def test_bad_names_exit_2_before_any_work(tmp_path, phantom_3d, capsys):
    data = _nifti(tmp_path / "d", phantom_3d)
    out = tmp_path / "o"
    assert main(["bench", "--data", str(data), "--noise", "rician:0.05", "--methods", "noisy,mr2d", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'mr2d'" in err and "mr-2d" in err and "nlm" in err
    assert "bench:" not in err and not out.exists()  # no progress bar started, nothing written
    assert main(["run", "-i", str(data), "-o", str(out), "-m", "nml"]) == 2
    err = capsys.readouterr().err
    assert "'nml' cannot be used: unknown model or method" in err and "nlm" in err and "mr-2d" in err and not out.exists()


def test_bench_runs_a_plain_model_name_and_run_the_bench_form(tmp_path, phantom_3d):
    data = _nifti(tmp_path / "d", phantom_3d)
    assert main(["bench", "--data", str(data), "--noise", "rician:0.05", "--methods", "noisy,mr-2d",
                 "--max-slices", "4", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    with open(tmp_path / "b" / "results.csv", newline="") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"noisy", "dae:mr-2d"}
    assert main(["run", "-i", str(data), "-o", str(tmp_path / "r"), "-m", "dae:mr-2d", "--quiet"]) == 0
    with open(tmp_path / "r" / "manifest.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["model"] == "mr-2d"


def test_help_lists_the_valid_names(capsys):
    for cmd in ("run", "bench"):
        assert main([cmd, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(n in text for n in (*methods.CLASSICAL, *methods.shipped_models())), cmd
    assert "mr-2d:tta" in text and "bm4d" in text and "noisy" in text


def _fits(lines, width=80):
    return [ln for ln in lines if len(ln) > width]


def test_models_prints_a_table_that_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"NAME +KIND +DIMS +TRAINING NOISE +VAL PSNR$", lines[0])
    assert not _fits(lines)
    for name in methods.shipped_models():
        assert any(re.match(rf"{re.escape(name)} +\w+ +[23]D +\S+ +[\d.]+ dB$", ln) for ln in lines), name


@pytest.mark.skipif(not SAMPLE.exists(), reason="no sample data")
def test_info_prints_a_table_that_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["info", str(SAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"SCAN +FORMAT +MOD +SHAPE +SPACING MM +FILES +ENCODING$", lines[0])
    assert not _fits(lines)
    assert any(re.match(r" +dicom +CT +3x512x512 +1x0\.811x0\.811 +3 +implicit LE$", ln) for ln in lines)
    assert "SOURCES.md: skipped: not a DICOM or NIfTI file" in lines
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: one line per scan
    assert main(["info", str(SAMPLE)]) == 0
    assert re.search(r"^ct_abdomen_dicom/S2_series +dicom +CT ", capsys.readouterr().out, re.M)


def test_continue_says_how_many_scans_it_reused(tmp_path, phantom_3d, capsys):
    data = _nifti(tmp_path / "d", phantom_3d)
    _nifti(data, phantom_3d * 0.5, "q_mr.nii.gz")
    _nifti(data, phantom_3d * 0.7, "r_mr.nii.gz")
    args = ["run", "-i", str(data), "-o", str(tmp_path / "o"), "-m", "tv", "--quiet"]
    assert main(args) == 0
    assert "reused" not in capsys.readouterr().out
    (data / "q_mr.nii.gz").unlink()
    _nifti(data, phantom_3d * 0.4, "q_mr.nii.gz")  # changed: redone
    assert main([*args, "--continue"]) == 0
    assert "3 ok (2 reused from the earlier run, 1 run now)" in capsys.readouterr().out


def test_simulate_warns_on_an_implausible_level(tmp_path, phantom_3d, caplog):
    from denoise.noise import implausible_level

    assert implausible_level("rician:0.05") is None and implausible_level("lowdose:0.01") is None
    assert "500%" in implausible_level("rician:5") and "rician:0.05" in implausible_level("rician:5")
    assert "mrkspace" in implausible_level("rician:0.01-0.09|mrkspace:1-9,coils=2")
    data = _nifti(tmp_path / "d", phantom_3d)
    for spec, warned in (("rician:5", True), ("rician:0.05", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(["simulate", "-i", str(data), "-o", str(tmp_path / spec), "--noise", spec, "--quiet"]) == 0
        said = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        assert ("500% of the robust maximum" in said and "did you mean rician:0.05" in said) == warned, said


def test_a_closed_pipe_ends_the_listing_quietly():
    """`denoise models | head -1`: the reader leaves early; no traceback on stderr."""
    import subprocess
    import sys

    proc = subprocess.run(f"'{sys.executable}' -m denoise.cli models | head -c 20", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith("NAME")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
