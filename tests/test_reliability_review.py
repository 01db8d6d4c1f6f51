"""Fault injection, second round (issue #23): the attacks of a hostile review of the first fixes.

Lock files that are links to inputs, one folder under two names (bind mounts), two scans with one
output path, outputs replaced behind a row's back, undecodable file names, stale failed rows,
symlinked output folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SAMPLE
from test_reliability_run import FAST, assert_manifest_matches_disk, manifest, nifti, snapshot

from denoise.cli import main
from denoise.outdir import lock_name


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "in"
    nifti(src / "ph.nii.gz")
    shutil.copytree(SAMPLE / "ct_abdomen_dicom", src / "ct")
    return src


@pytest.mark.parametrize("how", ["symlink", "hardlink", "foreign_content"])
def test_a_lock_file_that_is_an_input_under_another_name_is_never_written(tree, tmp_path, how, capsys):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / lock_name()
    if how == "symlink":
        lock.symlink_to(tree / "ph.nii.gz")
    elif how == "hardlink":
        os.link(tree / "ph.nii.gz", lock)
    else:  # what a bind mount of an input onto the lock's name looks like from inside: a file that is no lock
        shutil.copy(tree / "ph.nii.gz", lock)
    before = snapshot(tree)
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 2
    assert "left untouched" in capsys.readouterr().err
    assert snapshot(tree) == before
    assert (lock.read_bytes() if how != "symlink" else lock.resolve().read_bytes()) == (tree / "ph.nii.gz").read_bytes()


def test_out_bind_mounted_onto_in_is_refused(tree, tmp_path):
    out = tmp_path / "mnt"
    out.mkdir()
    if subprocess.run(["mount", "--bind", str(tree), str(out)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root in a container that allows mounts)")
    try:
        before = snapshot(tree)
        assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 2
        assert main(["run", "-i", str(tree / "ct"), "-o", str(out / "ct" / "x"), *FAST]) == 2
        assert snapshot(tree) == before
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_two_scans_with_one_output_path_never_replace_each_other(tree, tmp_path):
    shutil.copy(tree / "ph.nii.gz", tree / "ct" / "S2_series.nii.gz")  # = the series' --format nifti output
    (tree / "ph_noise.nii.gz").write_bytes((tree / "ph.nii.gz").read_bytes())  # = ph's --noise-map output
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), "--format", "nifti", "--noise-map", *FAST]) == 1
    rows = assert_manifest_matches_disk(out)
    assert rows["ct/S2_series"]["status"] == "ok"
    assert rows["ct/S2_series.nii.gz"]["status"] == "failed" and "also the output of" in rows["ct/S2_series.nii.gz"]["reason"]
    assert nib.load(str(out / "ct" / "S2_series.nii.gz")).shape[-1] == 3  # the series (3 slices), not the 2D image
    assert rows["ph.nii.gz"]["status"] == "ok" and rows["ph_noise.nii.gz"]["status"] == "failed"


def test_a_scan_inside_another_scans_output_series_folder_fails_alone(tree, tmp_path):
    (tree / "ct" / "S2_series").mkdir()
    shutil.copy(tree / "ph.nii.gz", tree / "ct" / "S2_series" / "x.nii.gz")
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 1
    rows = assert_manifest_matches_disk(out)
    assert rows["ct/S2_series/x.nii.gz"]["status"] == "failed" and "inside the output series folder" in \
        rows["ct/S2_series/x.nii.gz"]["reason"]
    assert rows["ct/S2_series"]["status"] == "ok"


def test_an_output_replaced_behind_its_rows_back_is_redone_by_continue(tree, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), "-m", "median", "--quiet"]) == 0
    other = tmp_path / "other.nii.gz"
    nifti(other, seed=9)
    os.replace(other, out / "ph.nii.gz")  # what a killed run or another part leaves: a new file, the old row
    from denoise.batch import denoise_folder

    s = denoise_folder(tree, out, model="median", resume=True, progress=False)
    assert s["processed"] == 1 and s["reused"] == 1
    assert manifest(out)["ph.nii.gz"]["status"] == "ok"


def test_a_file_name_that_is_not_utf8_is_processed(tree, tmp_path):
    shutil.copy(tree / "ph.nii.gz", os.fsencode(tree) + b"/M\xfcller.nii.gz")
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    rows = manifest(out)
    assert sum(r["status"] == "ok" for r in rows.values()) == 3
    assert main(["run", "-i", str(tree), "-o", str(out), "--continue", *FAST]) == 0


def test_a_failed_row_goes_with_its_file(tree, tmp_path):
    (tree / "bad.nii.gz").write_bytes((tree / "ph.nii.gz").read_bytes()[:300])
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 1
    (tree / "bad.nii.gz").unlink()
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    assert "bad.nii.gz" not in manifest(out)


def test_continue_with_noise_map_writes_the_maps_a_run_without_it_did_not(tree, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    assert main(["run", "-i", str(tree), "-o", str(out), "--continue", "--noise-map", *FAST]) == 0
    rows = manifest(out)
    assert (out / "ph_noise.nii.gz").exists() and rows["ph.nii.gz"]["noise_map"] == "ph_noise.nii.gz"
    assert (out / "ct" / "S2_series_noise").is_dir()


def test_a_symlinked_series_folder_in_out_is_replaced_not_followed(tree, tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "keep.txt").write_text("the user's")
    out = tmp_path / "out"
    (out / "ct").mkdir(parents=True)
    (out / "ct" / "S2_series").symlink_to(ext, target_is_directory=True)
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    assert (ext / "keep.txt").read_text() == "the user's" and [p.name for p in ext.iterdir()] == ["keep.txt"]
    assert not (out / "ct" / "S2_series").is_symlink() and list((out / "ct" / "S2_series").glob("*.dcm"))
    assert_manifest_matches_disk(out)


def test_uneven_slice_spacing_reaches_the_manifest_without_paths(tmp_path):
    parent = tmp_path / "Doe^John"
    src = parent / "in"
    shutil.copytree(SAMPLE / "phantom_3d_dicom", src / "p")
    (src / "p" / "IM00020.dcm").unlink()
    out = tmp_path / "out"
    assert main(["run", "-i", str(src), "-o", str(out), *FAST]) == 0
    row = next(iter(manifest(out).values()))
    assert "uneven slice spacing" in row["warning"] and "Doe" not in (out / "manifest.csv").read_text()
    assert "Doe" not in (out / "summary.json").read_text()


def test_noise_maps_and_outputs_are_described(tree, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), "--noise-map", *FAST]) == 0
    rows = manifest(out)
    for r in rows.values():
        assert r["output_stamp"] and (out / r["noise_map"]).exists()
    np.testing.assert_allclose(nib.load(str(out / "ph_noise.nii.gz")).get_fdata()
                               + nib.load(str(out / "ph.nii.gz")).get_fdata(),
                               nib.load(str(tree / "ph.nii.gz")).get_fdata(), atol=1e-3)


def test_the_manifest_reports_and_warns_about_correlated_noise(tmp_path):
    from denoise.noise import add_noise

    clean = np.zeros((6, 96, 96), np.float32)
    clean[:, 24:72, 24:72] = 800.0
    src = tmp_path / "in"
    src.mkdir()
    for name, spec in (("mr_white.nii.gz", "rician:0.03"), ("mr_filled.nii.gz", "mrkspace:0.03,zf=2,filter=hamming")):
        nib.save(nib.Nifti1Image(add_noise(clean, spec, seed=0).T.copy(), np.eye(4)), str(src / name))
    out = tmp_path / "out"
    assert main(["run", "-i", str(src), "-o", str(out), *FAST]) == 0
    rows = manifest(out)
    white, filled = (float(rows[k]["noise_corr"]) for k in ("mr_white.nii.gz", "mr_filled.nii.gz"))
    assert abs(white) < 0.1 and filled > 0.5
    assert "spatially correlated" in rows["mr_filled.nii.gz"]["warning"]
    assert "spatially correlated" not in rows["mr_white.nii.gz"]["warning"]
