"""Viewer confinement (issue #23): every file the viewer opens resolves inside the data root,
symlinked members of a DICOM series and symlinked NIfTI files included."""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import write_dicom_slices

from denoise.io import read_scan
from denoise.viewer.support import links_outside, list_scans_under, read_scan_under_root

APP = str(Path(__file__).resolve().parents[1] / "apps" / "viewer.py")
_OPENED: list[str] | None = None  # paths opened while a test watches (None: not watching)


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(Path(args[0].decode() if isinstance(args[0], bytes) else args[0]).resolve()))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records while a test watches


@pytest.fixture
def opened():
    """The resolved paths of every file opened (by Python, pydicom or nibabel) during the test."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


@pytest.fixture
def tree(tmp_path, phantom_3d):
    """root/series (3 slices, clean), root/f (3 slices + IM1.dcm -> a valid DICOM outside the root),
    root/n.nii.gz -> a valid NIfTI outside, root/sub/n.nii.gz -> the same outside NIfTI."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_dicom_slices(root / "series", phantom_3d[:3])
    write_dicom_slices(root / "f", phantom_3d[:3])
    secret_dcm = write_dicom_slices(outside / "dcm", phantom_3d[5:6] + 7)[0]
    (root / "f" / "IM1.dcm").symlink_to(secret_dcm)
    secret_nii = outside / "x.nii.gz"
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(secret_nii))
    (root / "n.nii.gz").symlink_to(secret_nii)
    (root / "sub").mkdir()
    (root / "sub" / "n.nii.gz").symlink_to(secret_nii)
    return root, outside, secret_dcm, secret_nii


def test_outside_targets_are_readable_so_a_refusal_is_the_confinement(tree):
    _, _, secret_dcm, secret_nii = tree
    assert read_scan(secret_dcm).array.shape == (24, 24)
    assert read_scan(secret_nii).array.ndim == 3


@pytest.mark.parametrize("rel, culprit", [("f", "f/IM1.dcm"), ("n.nii.gz", "n.nii.gz"), ("sub", "sub/n.nii.gz")])
def test_symlink_leaving_the_root_is_refused_and_never_opened(tree, opened, rel, culprit):
    root, outside, _, _ = tree
    with pytest.raises(ValueError, match="outside the data root") as err:
        read_scan_under_root(root, rel)
    msg = str(err.value)
    assert culprit in msg and str(outside) not in msg  # names the link, not where it leads
    assert not [p for p in opened if p.startswith(str(outside.resolve()))]


def test_listing_leaves_out_links_leaving_the_root_without_opening_them(tree, opened):
    root, outside, _, _ = tree
    listed = list_scans_under(root)
    assert "series" in listed  # the clean series is still offered
    assert not {"f", "n.nii.gz", "sub/n.nii.gz", "sub"} & set(listed)
    assert sorted(links_outside(root)) == ["f/IM1.dcm", "n.nii.gz", "sub/n.nii.gz"]
    assert not [p for p in opened if p.startswith(str(outside.resolve()))]
    for rel in listed:  # everything listed can be read
        assert read_scan_under_root(root, rel).array.shape == (3, 24, 24)


def test_symlinks_staying_inside_the_root_still_work(tmp_path, phantom_3d):
    root = tmp_path / "root"
    files = write_dicom_slices(root / "store", phantom_3d[:4])
    (root / "linked").mkdir()
    for f in files:
        (root / "linked" / f.name).symlink_to(f)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(root / "vol.nii.gz"))
    (root / "alias.nii.gz").symlink_to(root / "vol.nii.gz")
    assert {"store", "linked", "vol.nii.gz", "alias.nii.gz"} <= set(list_scans_under(root))
    assert links_outside(root) == []
    np.testing.assert_array_equal(read_scan_under_root(root, "linked").array, phantom_3d[:4])
    np.testing.assert_array_equal(read_scan_under_root(root, "alias.nii.gz").array, phantom_3d)


def test_dotdot_and_absolute_paths_still_refused(tree, opened):
    root, outside, secret_dcm, _ = tree
    for bad in ("../outside/dcm", str(secret_dcm), "f/../../outside/x.nii.gz"):
        with pytest.raises(ValueError, match="outside the data root|absolute paths"):
            read_scan_under_root(root, bad)
    assert not [p for p in opened if p.startswith(str(outside.resolve()))]


def test_symlink_loops_are_refused_without_crashing_the_listing(tmp_path, phantom_3d):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(root / "vol.nii.gz"))
    assert list_scans_under(root) == ["vol.nii.gz"]
    for rel in ("a", "b"):
        with pytest.raises(ValueError):
            read_scan_under_root(root, rel)


def test_unreadable_scan_error_names_the_relative_path_only(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08 not really")
    with pytest.raises(ValueError, match="bad.nii.gz") as err:
        read_scan_under_root(root, "bad.nii.gz")
    assert str(root) not in str(err.value)


@pytest.mark.timeout(600)
def test_viewer_refuses_a_series_with_a_member_linked_outside(tree, monkeypatch):
    st_testing = pytest.importorskip("streamlit.testing.v1")
    root = tree[0]
    monkeypatch.setenv("DENOISE_DATA_ROOT", str(root))
    at = st_testing.AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio[0].set_value("data root").run()
    assert any("link outside" in w.value for w in at.warning)
    pick = [s for s in at.selectbox if s.label == "scan under data root"]
    assert len(pick) == 1 and set(pick[0].options) == {"series"}
    at.text_input[0].set_value("f").run()
    assert any("f/IM1.dcm" in e.value and "outside the data root" in e.value for e in at.error)
