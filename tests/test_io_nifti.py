import gzip

import nibabel as nib
import numpy as np
import pytest

from denoise.io import ScanReadError, read_scan, write_scan
from denoise.scan import Scan


def test_nifti_round_trip_keeps_values_affine_and_codes(nifti_file, tmp_path, phantom_3d):
    scan = read_scan(nifti_file)
    assert scan.array.shape == phantom_3d.shape  # (z, y, x)
    np.testing.assert_array_equal(scan.array, phantom_3d)
    assert scan.spacing[0] == pytest.approx(2.5, abs=0.01)
    out = write_scan(scan.with_array(scan.array + 0.25), tmp_path / "out.nii.gz")
    back = nib.load(str(out))
    src = nib.load(str(nifti_file))
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-5)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    assert back.header.get_xyzt_units() == src.header.get_xyzt_units()
    np.testing.assert_allclose(read_scan(out).array, phantom_3d + 0.25, atol=1e-5)


def test_nifti_4d_round_trip(tmp_path, rng):
    data = rng.random((6, 5, 4, 3)).astype(np.float32)  # x, y, z, t
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "ts.nii"))
    scan = read_scan(tmp_path / "ts.nii")
    assert scan.array.shape == (3, 4, 5, 6) and scan.is_timeseries
    write_scan(scan, tmp_path / "ts_out.nii")
    np.testing.assert_allclose(nib.load(str(tmp_path / "ts_out.nii")).get_fdata(), data, atol=1e-6)


def test_nifti_nan_is_refused_with_file_name(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(ScanReadError, match="bad.nii.gz.*NaN"):
        read_scan(path)


def test_truncated_nifti_names_the_file(nifti_file, tmp_path):
    raw = gzip.decompress(nifti_file.read_bytes())
    path = tmp_path / "trunc.nii"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ScanReadError, match="trunc.nii"):
        read_scan(path)


def test_nifti_2d_and_modality_written(tmp_path, phantom_2d):
    affine = np.diag([0.7, 0.5, 1.0, 1.0])  # x spacing 0.7, y spacing 0.5
    out = write_scan(Scan(phantom_2d, (0.5, 0.7), affine, "CT"), tmp_path / "slice.nii.gz")
    back = read_scan(out)
    assert back.array.shape == phantom_2d.shape and back.modality == "CT"
    assert back.spacing == pytest.approx((0.5, 0.7))


def test_a_slab_keeps_every_voxel_at_its_world_position(nifti_file):
    scan = read_scan(nifti_file)
    slab = scan.slab(3, 4)
    assert np.array_equal(slab.array, scan.array[3:7]) and slab.spacing == scan.spacing and slab.meta == {}
    # voxel (x, y, z) of the slab is voxel (x, y, z + 3) of the volume, in world millimetres
    for x, y, z in [(0, 0, 0), (5, 2, 3), (1, 7, 1)]:
        np.testing.assert_allclose(slab.affine @ [x, y, z, 1], scan.affine @ [x, y, z + 3, 1])
    with pytest.raises(ValueError, match="volumes"):  # a 2D slice has no slices to cut
        Scan(scan.array[0], scan.spacing[1:]).slab(0, 1)
