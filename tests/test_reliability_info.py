"""`denoise info` (issue #23): a clear message and a non-zero exit when nothing usable was found
or something failed to read; 0 only when every scan read."""

import gzip
import re

import nibabel as nib
import numpy as np
from conftest import write_dicom_slices

from denoise.cli import main


def test_empty_folder_says_so_and_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert f"no DICOM or NIfTI scans found under {tmp_path / 'empty'} (0 files looked at)" in err


def test_folder_without_scans_counts_the_files_looked_at(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "table.csv").write_text("a,b\n")
    assert main(["info", str(tmp_path)]) == 1
    cap = capsys.readouterr()
    assert re.search(r"no DICOM or NIfTI scans found under .* \(2 files looked at\)", cap.err)
    assert "notes.txt: skipped" in cap.out and "sub/table.csv: skipped" in cap.out


def test_all_readable_exits_0(tmp_path, phantom_3d, capsys):
    write_dicom_slices(tmp_path / "d", phantom_3d)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    (tmp_path / "readme.txt").write_text("not an image, not a failure")
    assert main(["info", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    assert re.search(r"^vol\.nii\.gz +nifti +OT +16x24x24 ", cap.out, re.M)
    assert "unreadable" not in cap.out and "no DICOM" not in cap.err


def test_an_unreadable_scan_is_listed_and_exits_1_without_server_paths(tmp_path, phantom_3d, capsys):
    data = tmp_path / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(data / "good.nii.gz"))
    raw = gzip.decompress((data / "good.nii.gz").read_bytes())
    (data / "trunc.nii").write_bytes(raw[: len(raw) // 2])
    assert main(["info", str(data)]) == 1
    out = capsys.readouterr().out
    good = next(line for line in out.splitlines() if line.startswith("good.nii.gz"))
    bad = next(line for line in out.splitlines() if line.startswith("trunc.nii"))
    assert "16x24x24" in good and "unreadable" in bad
    assert str(tmp_path) not in out  # the reason names the file relative to PATH, like the line's start


def test_broken_dicom_only_exits_1(tmp_path, phantom_3d, capsys):
    path = write_dicom_slices(tmp_path / "d", phantom_3d[:1])[0]
    path.write_bytes(path.read_bytes()[:400])  # header cut short: looks like DICOM, cannot be read
    assert main(["info", str(tmp_path / "d")]) == 1
    cap = capsys.readouterr()
    assert "slice000.dcm: unreadable" in cap.out and "no DICOM or NIfTI scans found" in cap.err
