import shutil

import numpy as np
import pydicom
import pytest
from conftest import SHARED, tree_hash, write_dicom_slices
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid

from denoise.io import NotAnImageError, ScanReadError, discover_scans, find_scans, read_scan, write_scan


def _files(folder):
    return sorted(folder.glob("*.dcm"))


def test_series_round_trip_is_a_derived_series(dicom_series, tmp_path, phantom_3d):
    scan = read_scan(dicom_series)
    np.testing.assert_array_equal(scan.array, phantom_3d)
    denoised = scan.with_array(scan.array * 0.5 + 0.3)
    out = write_scan(denoised, tmp_path / "out", description="denoised test")
    back = read_scan(out)
    assert "RescaleSlope" not in pydicom.dcmread(str(_files(out)[0]))  # MR: the stored values are the values
    assert np.max(np.abs(back.array - denoised.array)) <= 0.5
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-4)
    assert back.spacing == pytest.approx(scan.spacing)
    src = pydicom.dcmread(str(_files(dicom_series)[0]))
    files = _files(out)
    new = [pydicom.dcmread(str(f)) for f in files]
    assert len(files) == len(phantom_3d)
    assert all(d.StudyInstanceUID == src.StudyInstanceUID for d in new)
    assert len({d.SeriesInstanceUID for d in new}) == 1 and new[0].SeriesInstanceUID != src.SeriesInstanceUID
    assert src.SOPInstanceUID not in {d.SOPInstanceUID for d in new}
    assert list(new[0].ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert "RESEARCH" in new[0].SeriesDescription and "denoised" in new[0].SeriesDescription
    assert new[0].DerivationDescription
    refs = {d.SourceImageSequence[0].ReferencedSOPInstanceUID for d in new}
    assert refs == {pydicom.dcmread(str(f)).SOPInstanceUID for f in _files(dicom_series)}
    assert new[0].file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert new[0].PatientID == src.PatientID and new[0].WindowWidth == src.WindowWidth
    assert new[0].BitsStored == src.BitsStored and new[0].PixelRepresentation == src.PixelRepresentation


def test_values_outside_source_range_are_kept(tmp_path, phantom_3d):
    """MR without a rescale: negative values (unsigned source) make the whole output series signed,
    values beyond the source's bits stored widen it (one layout for every slice); values 16 bits
    cannot hold, and a CT source, get a rescale."""
    write_dicom_slices(tmp_path / "s12", phantom_3d, extra={"BitsStored": 12, "HighBit": 11})
    scan = read_scan(tmp_path / "s12")
    neg = scan.array.copy()
    neg[3, 0, 0] = -5.0  # one voxel below zero
    big = scan.array * 5000.0 / scan.array.max()  # beyond 12 bits
    for name, arr in (("neg", neg), ("big", big)):
        back = read_scan(write_scan(scan.with_array(arr), tmp_path / name))
        files = [pydicom.dcmread(str(f)) for f in _files(tmp_path / name)]
        assert all("RescaleSlope" not in d and d.BitsAllocated == 16 for d in files)
        assert len({(d.BitsStored, d.PixelRepresentation) for d in files}) == 1  # one layout per series
        assert np.max(np.abs(back.array - arr)) <= 0.5
    assert (files[0].BitsStored, files[0].PixelRepresentation) == (16, 0)  # big: widened, still unsigned
    neg0 = pydicom.dcmread(str(_files(tmp_path / "neg")[0]))
    assert (neg0.BitsStored, neg0.PixelRepresentation) == (16, 1)
    huge = read_scan(write_scan(scan.with_array(scan.array * 1e3), tmp_path / "huge"))  # > 65535
    assert "RescaleSlope" in pydicom.dcmread(str(_files(tmp_path / "huge")[0]))
    assert np.max(np.abs(huge.array - scan.array * 1e3)) <= 1e3 * scan.array.max() / 65535 * 1.01
    ct = scan.with_array(scan.array - 700.0)
    ct.meta["dicom_headers"] = [h.copy() for h in scan.meta["dicom_headers"]]
    for h in ct.meta["dicom_headers"]:
        h.Modality = "CT"
    back = read_scan(write_scan(ct, tmp_path / "ct"))
    slope = float(pydicom.dcmread(str(_files(tmp_path / "ct")[0])).RescaleSlope)
    assert np.max(np.abs(back.array - ct.array)) <= slope


def test_nifti_values_written_as_dicom_keep_their_precision(tmp_path):
    """A float image without DICOM headers (values 0..1) gets a fitted rescale, not rounding."""
    from denoise.scan import Scan

    arr = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    back = read_scan(write_scan(Scan(arr, (1, 1, 1), np.eye(4), "MR"), tmp_path / "o"))
    assert np.max(np.abs(back.array - arr)) < 1e-3


def test_shuffled_names_sorted_by_position_not_name(tmp_path, phantom_3d, rng):
    names = [f"{x}.img" for x in rng.permutation(10_000)[: len(phantom_3d)]]
    # instance numbers reversed, positions along +z: the reader must follow geometry
    write_dicom_slices(tmp_path / "s", phantom_3d, names=names,
                       extra={"InstanceNumber": lambda k: 100 - k})
    np.testing.assert_array_equal(read_scan(tmp_path / "s").array, phantom_3d)


def test_two_series_in_one_folder_are_separated(tmp_path, phantom_3d):
    a = write_dicom_slices(tmp_path / "mixed", phantom_3d, names=[f"a{k}" for k in range(16)])
    write_dicom_slices(tmp_path / "mixed", phantom_3d[:5] * 2, names=[f"b{k}" for k in range(5)])
    scans = find_scans(tmp_path / "mixed")
    shapes = sorted(s.array.shape for s in scans)
    assert shapes == [(5, 24, 24), (16, 24, 24)]
    assert len(a) == 16
    with pytest.raises(ScanReadError, match="2 scans"):
        read_scan(tmp_path / "mixed")


def test_time_points_sharing_positions_become_4d(tmp_path, phantom_3d):
    uid = generate_uid()
    vol = phantom_3d[:4]
    for t in range(3):
        write_dicom_slices(tmp_path / "fmri", vol + 10 * t, series_uid=uid, names=[f"t{t}z{k}" for k in range(4)],
                           extra={"AcquisitionNumber": t + 1}, instance_offset=4 * t)
    scan = read_scan(tmp_path / "fmri")
    assert scan.array.shape == (3, 4, 24, 24)
    for t in range(3):
        np.testing.assert_array_equal(scan.array[t], vol + 10 * t)


def test_magnitude_and_phase_are_separate_scans(tmp_path, phantom_3d):
    uid = generate_uid()
    write_dicom_slices(tmp_path / "gre", phantom_3d[:4], series_uid=uid, names=[f"m{k}" for k in range(4)],
                       extra={"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]})
    write_dicom_slices(tmp_path / "gre", phantom_3d[:4] * 0 + 7, series_uid=uid, names=[f"p{k}" for k in range(4)],
                       extra={"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]})
    scans = find_scans(tmp_path / "gre")
    assert len(scans) == 2 and all(s.array.shape == (4, 24, 24) for s in scans)


def test_ct_rescale_gives_hu_and_signed_big_endian(tmp_path, phantom_3d):
    hu = phantom_3d - 1000.0
    write_dicom_slices(tmp_path / "ct", hu, modality="CT", slope=1.0, intercept=-1024.0, signed=False)
    scan = read_scan(tmp_path / "ct")
    assert scan.modality == "CT"
    np.testing.assert_array_equal(scan.array, hu)
    write_dicom_slices(tmp_path / "be", hu, modality="CT", signed=True, big_endian=True)
    np.testing.assert_array_equal(read_scan(tmp_path / "be").array, hu)


def test_uneven_spacing_is_noted_without_paths(tmp_path, phantom_3d):
    write_dicom_slices(tmp_path / "gap", phantom_3d[:5], positions_z=[0, 2, 4, 8, 10])
    notes = read_scan(tmp_path / "gap").meta["read_notes"]
    assert any("uneven slice spacing" in n for n in notes)
    assert not any(str(tmp_path) in n for n in notes)  # the manifest's warning column gets it: no paths
    write_dicom_slices(tmp_path / "even", phantom_3d[:5])
    assert not any("uneven" in n for n in read_scan(tmp_path / "even").meta["read_notes"])


def test_bad_inputs_give_clear_errors(tmp_path, dicom_series):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.dcm").write_text("this is not DICOM")
    with pytest.raises(ScanReadError, match="notes.dcm.*not a DICOM"):
        read_scan(bad / "notes.dcm")
    data = _files(dicom_series)[0].read_bytes()
    (bad / "trunc.dcm").write_bytes(data[: len(data) - 600])
    with pytest.raises(ScanReadError, match="trunc.dcm"):
        read_scan(bad / "trunc.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScanReadError, match="no readable scan"):
        read_scan(empty)


def test_non_image_dicom_is_skipped_with_reason(tmp_path, dicom_series):
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = generate_uid()
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.Modality = "SR"
    path = dicom_series / "report.dcm"
    sr.save_as(str(path), enforce_file_format=True)
    with pytest.raises(NotAnImageError, match="report.dcm.*non-image"):
        read_scan(path)
    scans, skipped = discover_scans(dicom_series)
    assert len(scans) == 1 and [s.relpath for s in skipped] == ["report.dcm"]
    assert not skipped[0].failed


def test_reading_never_modifies_inputs(dicom_series, nifti_file):
    before = tree_hash(dicom_series.parent)
    read_scan(dicom_series)
    read_scan(nifti_file)
    find_scans(dicom_series.parent)
    assert tree_hash(dicom_series.parent) == before


def test_mosaic_is_refused_not_flattened(tmp_path, phantom_3d):
    write_dicom_slices(tmp_path / "mos", phantom_3d[:1], extra={"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]})
    with pytest.raises(ScanReadError, match="mosaic"):
        read_scan(tmp_path / "mos")


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not available")
def test_real_shared_dicom(tmp_path):
    fmri = read_scan(SHARED / "dicom" / "ge_mr_epi_fmri")
    assert fmri.array.shape == (10, 15, 64, 64) and fmri.spacing[0] == pytest.approx(5.0)
    enh = read_scan(SHARED / "dicom" / "philips_phantom_mr_t1_tse_ai_off_enhanced")
    assert enh.array.shape == (12, 256, 256) and enh.spacing == pytest.approx((5.0, 1.0, 1.0))
    ct = read_scan(SHARED / "dicom" / "ge_ct_colonography_3slices")
    assert ct.modality == "CT" and ct.array.min() < -900  # HU: air
    # the enhanced object round-trips as a derived classic series pointing at its frames
    out = write_scan(enh, tmp_path / "enh_out")
    back = read_scan(out)
    assert np.max(np.abs(back.array - enh.array)) <= 1.3
    d = pydicom.dcmread(str(sorted(out.glob("*.dcm"))[3]))
    assert d.SourceImageSequence[0].ReferencedFrameNumber in range(1, 13)
    copy = tmp_path / "ct"
    shutil.copytree(SHARED / "dicom" / "ge_ct_colonography_3slices", copy)
    ct_back = read_scan(write_scan(ct, tmp_path / "ct_out"))
    assert np.max(np.abs(ct_back.array - ct.array)) <= 1.0


def test_rle_compressed_series_decodes(tmp_path, phantom_3d):
    from pydicom.uid import RLELossless

    files = write_dicom_slices(tmp_path / "rle", phantom_3d[:4])
    for f in files:
        ds = pydicom.dcmread(str(f))
        ds.compress(RLELossless)
        ds.save_as(str(f), enforce_file_format=True)
    scan = read_scan(tmp_path / "rle")
    np.testing.assert_array_equal(scan.array, phantom_3d[:4])
    assert scan.meta["transfer_syntax"] == RLELossless


def test_8bit_series_round_trips_in_8bit(tmp_path, phantom_3d):
    files = write_dicom_slices(tmp_path / "s8", np.clip(phantom_3d[:4] / 4, 0, 255))
    for f in files:
        ds = pydicom.dcmread(str(f))
        arr = ds.pixel_array.astype(np.uint8)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = arr.tobytes()
        ds.save_as(str(f), enforce_file_format=True)
    scan = read_scan(tmp_path / "s8")
    out = write_scan(scan.with_array(scan.array * 0.9), tmp_path / "o8")
    d = pydicom.dcmread(str(sorted(out.glob("*.dcm"))[0]))
    assert d.BitsAllocated == 16 and d.BitsStored == 8 and d.PixelRepresentation == 0  # MR images are 16-bit
    assert np.max(np.abs(read_scan(out).array - scan.array * 0.9)) <= float(d.get("RescaleSlope", 0.5))
