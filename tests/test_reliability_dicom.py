"""Issue #23, DICOM reader: 12-bit lossy JPEG, duplicate objects, series mixing image kinds."""

import logging
import shutil
import sys

import numpy as np
import pydicom
import pydicom.data
import pytest
from conftest import SAMPLE, write_dicom_slices
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGExtended12Bit, generate_uid

from denoise.io import ScanReadError, discover_scans, read_scan

MR_SERIES = SAMPLE / "mr_dwi_b0_dicom"


def _copy(src, dst):
    shutil.copytree(src, dst)
    return sorted(dst.glob("*.dcm"))


def _testdata(name, dst):
    path = dst / name
    dst.mkdir(exist_ok=True)
    shutil.copy(pydicom.data.get_testdata_file(name), path)
    return path


# --- 11: 12-bit lossy JPEG ---------------------------------------------------------------------


def _load_error(path) -> ScanReadError:
    scans, skipped = discover_scans(path)
    assert len(scans) == 1 and not skipped
    with pytest.raises(ScanReadError) as info:
        scans[0].load()
    return info.value


def test_undecodable_jpeg_names_the_decoders_tried(tmp_path):
    path = _testdata("JPEG-lossy.dcm", tmp_path)
    plugins = get_decoder(JPEGExtended12Bit).available_plugins
    err = _load_error(path)
    assert err.path == str(path)
    assert str(tmp_path) not in err.reason
    if not plugins:  # no decoder at all: then and only then the codecs extra is the advice
        assert "install the codecs extra" in err.reason
        return
    assert "install the codecs extra" not in err.reason
    assert "could not be decoded by any installed decoder" in err.reason
    for name in plugins:
        assert f"{name} (" in err.reason


def test_codecs_extra_suggested_only_without_any_decoder(tmp_path, monkeypatch):
    path = _testdata("JPEG-lossy.dcm", tmp_path)
    monkeypatch.setattr(get_decoder(JPEGExtended12Bit), "_available", {})  # as if none installed
    err = _load_error(path)
    assert "no decoder for it is installed" in err.reason and "install the codecs extra" in err.reason
    assert "could not be decoded by any installed decoder" not in err.reason


def test_12bit_jpeg_extended_decodes(tmp_path):
    path = _testdata("JPGExtended.dcm", tmp_path)
    ds = pydicom.dcmread(str(path))
    assert ds.file_meta.TransferSyntaxUID == JPEGExtended12Bit and ds.BitsStored == 12
    decoded = [a for a in (_decode_with(path, p) for p in get_decoder(JPEGExtended12Bit).available_plugins)
               if a is not None]
    if not decoded:
        pytest.skip("no installed plugin decodes 12-bit JPEG Extended")
    scan = read_scan(path)
    assert scan.array.shape == (ds.Rows, ds.Columns)
    assert 0 <= scan.array.min() < scan.array.max() < 2 ** int(ds.BitsStored)
    np.testing.assert_array_equal(scan.array, decoded[0])


def _decode_with(path, plugin):
    try:
        return pydicom.pixels.pixel_array(str(path), decoding_plugin=plugin)
    except Exception:
        return None


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPGExtended.dcm"])
def test_pydicom_prints_no_decoder_tracebacks_at_warning_level(tmp_path, capfd, name):
    """A failing plugin is logged by pydicom with its traceback at ERROR; under the CLI's WARNING
    level (--quiet) that must not reach stderr (the reason names every plugin's message)."""
    path = _testdata(name, tmp_path)
    plugins = get_decoder(JPEGExtended12Bit).available_plugins
    if not plugins or (name == "JPGExtended.dcm" and "gdcm" not in plugins):
        pytest.skip("needs a decoding plugin that fails on this file (GDCM refuses 12-bit JPEG Extended)")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        try:
            read_scan(path)
        except ScanReadError:
            pass
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "12-bit precision" not in err


# --- 12: duplicate objects ---------------------------------------------------------------------


def _resave(src, dst, syntax, pixels=None):
    ds = pydicom.dcmread(str(src))
    if pixels is not None:
        ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(str(dst), enforce_file_format=True)


def test_same_objects_in_another_transfer_syntax_are_read_once(tmp_path):
    files = _copy(MR_SERIES, tmp_path / "s")
    original = read_scan(MR_SERIES)
    for f in files:
        _resave(f, f.with_name("copy_" + f.name), ImplicitVRLittleEndian)
    assert pydicom.dcmread(str(tmp_path / "s" / ("copy_" + files[0].name))).file_meta.TransferSyntaxUID \
        == ImplicitVRLittleEndian
    scans, _ = discover_scans(tmp_path / "s")
    assert len(scans) == 1
    assert len(scans[0].files) == 2 * len(files)  # documented: the copies are part of the input
    scan = scans[0].load()
    assert scan.array.shape == original.array.shape
    np.testing.assert_array_equal(scan.array, original.array)
    notes = scan.meta["read_notes"]
    assert len(notes) == 1 and notes[0].startswith(f"{len(files)} duplicate objects (same SOPInstanceUID) ignored")
    assert "copy_" + files[0].name in notes[0] and str(tmp_path) not in notes[0]
    assert not any("differ" in n for n in notes)


def test_duplicate_with_other_pixels_keeps_first_by_name_and_says_so(tmp_path):
    files = _copy(MR_SERIES, tmp_path / "s")
    original = read_scan(MR_SERIES)
    changed = pydicom.dcmread(str(files[3])).pixel_array + 7
    _resave(files[3], files[3].with_name("0_" + files[3].name), ExplicitVRLittleEndian, changed)  # sorts first
    _resave(files[5], files[5].with_name("z_" + files[5].name), ImplicitVRLittleEndian)  # same pixels
    scan = read_scan(tmp_path / "s")
    assert scan.array.shape == original.array.shape
    differs = np.flatnonzero(np.any(scan.array != original.array, axis=(1, 2)))
    assert len(differs) == 1
    np.testing.assert_array_equal(scan.array[differs[0]], original.array[differs[0]] + 7)
    notes = " | ".join(scan.meta["read_notes"])
    assert "2 duplicate objects" in notes and files[3].name in notes and "z_" + files[5].name in notes
    assert f"differ from the copy used (the first by file name): {files[3].name} (used 0_{files[3].name})" in notes
    assert "z_" + files[5].name + " (used" not in notes


# --- 13: series mixing image kinds -------------------------------------------------------------


def _field_map_series(folder, *, mag_extra=None, fm_extra=None, interleave=False, values=None):
    """The MR sample plus, in the same series and at the same positions, a smooth field map in
    Hz (-200..+200, signed int16) with the same ImageType: how a GE B0 map series arrives."""
    files = _copy(MR_SERIES, folder)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        mag_n, fm_n = (2 * k + 1, 2 * k + 2) if not interleave or k % 2 == 0 else (2 * k + 2, 2 * k + 1)
        rows, cols = int(ds.Rows), int(ds.Columns)
        yy, xx = np.mgrid[0:rows, 0:cols]
        field = np.rint(200 * (2 * (xx + yy + k) / (rows + cols + len(files) - 3) - 1))
        if values is not None:
            field = values(ds.pixel_array)
        _set(ds, {"InstanceNumber": mag_n, **(mag_extra or {})})
        ds.save_as(str(f), enforce_file_format=True)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelRepresentation = 1
        ds.PixelData = field.astype("<i2").tobytes()
        for tag in ("SmallestImagePixelValue", "LargestImagePixelValue", "WindowCenter", "WindowWidth"):
            if tag in ds:
                delattr(ds, tag)
        _set(ds, {"InstanceNumber": fm_n, **(fm_extra or {})})
        ds.save_as(str(f.with_name("fm_" + f.name)), enforce_file_format=True)
    return files


def _set(ds, values):
    for key, val in values.items():
        if key == "GE":
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", val)
        else:
            setattr(ds, key, val)


@pytest.mark.parametrize("interleave", [False, True])
def test_field_map_with_its_magnitude_is_refused_not_stacked(tmp_path, interleave):
    _field_map_series(tmp_path / "b0map", interleave=interleave)
    scans, _ = discover_scans(tmp_path / "b0map")
    assert len(scans) == 1  # nothing in the header separates the kinds
    with pytest.raises(ScanReadError) as info:
        scans[0].load()
    reason = info.value.reason
    assert "mixes image kinds" in reason and "below zero" in reason and "split the series" in reason
    assert ("at slice" in reason) == interleave
    assert str(tmp_path) not in reason


def test_time_points_with_ranges_apart_are_refused(tmp_path):
    _field_map_series(tmp_path / "m", values=lambda mag: np.rint(mag / 50))  # no negatives at all
    with pytest.raises(ScanReadError, match="mixes image kinds: the value ranges"):
        read_scan(tmp_path / "m")


@pytest.mark.parametrize("tags", [({"GE": 0}, {"GE": 1}), ({}, {"RescaleType": "HZ"})], ids=["ge_private", "hz"])
def test_header_tag_splits_field_map_from_magnitude(tmp_path, tags):
    _field_map_series(tmp_path / "b0map", mag_extra=tags[0], fm_extra=tags[1])
    original = read_scan(MR_SERIES)
    scans, _ = discover_scans(tmp_path / "b0map")
    assert len(scans) == 2 and scans[0].relpath != scans[1].relpath
    loaded = sorted((s.load() for s in scans), key=lambda s: float(s.array.min()))
    field, magnitude = loaded
    assert field.array.shape == magnitude.array.shape == original.array.shape
    np.testing.assert_array_equal(magnitude.array, original.array)
    assert field.array.min() < 0 < field.array.max() <= 200
    assert magnitude.meta["read_notes"] == []
    assert any("below zero" in n and "magnitude images" in n for n in field.meta["read_notes"])


def test_genuine_magnitude_time_series_stays_4d(tmp_path, rng):
    files = _copy(MR_SERIES, tmp_path / "fmri")
    original = read_scan(MR_SERIES)
    for t in (2, 3):
        for f in files:
            ds = pydicom.dcmread(str(f))
            mag = ds.pixel_array.astype(float)
            noisy = np.hypot(mag + rng.normal(0, 15, mag.shape), rng.normal(0, 15, mag.shape))  # Rician
            ds.PixelData = np.rint(noisy).astype(ds.pixel_array.dtype).tobytes()
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.AcquisitionNumber = t
            ds.save_as(str(f.with_name(f"t{t}_{f.name}")), enforce_file_format=True)
    scan = read_scan(tmp_path / "fmri")
    assert scan.array.shape == (3, *original.array.shape)
    np.testing.assert_array_equal(scan.array[0], original.array)
    assert scan.meta["read_notes"] == []


def test_negative_mr_values_are_noted_but_not_ct_or_magnitude(tmp_path, phantom_3d, dicom_series):
    z, y, x = np.mgrid[0:4, 0:24, 0:24]
    write_dicom_slices(tmp_path / "phase", np.rint((x + y + z) * 400.0 / 50 - 200), signed=True)
    note = read_scan(tmp_path / "phase").meta["read_notes"]
    assert len(note) == 1 and note[0].startswith("MR values below zero in ")
    assert read_scan(dicom_series).meta["read_notes"] == []
    write_dicom_slices(tmp_path / "ct", phantom_3d - 1000, modality="CT", signed=True)
    ct = read_scan(tmp_path / "ct")
    assert (ct.array < 0).mean() > 0.5 and ct.meta["read_notes"] == []


def _item(**kw):
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_enhanced_frames_split_by_complex_image_component(tmp_path, phantom_3d):
    mag = phantom_3d[:4]
    phase = np.rint(mag / 1000 * 3000 - 1500)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SeriesNumber = "MR", generate_uid(), generate_uid(), 7
    ds.ImageType, ds.ComplexImageComponent = ["ORIGINAL", "PRIMARY", "T1", "NONE"], "MIXED"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 24, 24, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SharedFunctionalGroupsSequence = [_item(
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
        PixelMeasuresSequence=[_item(PixelSpacing=[1.0, 1.0], SliceThickness=2.0)])]
    frames, pixels = [], []
    for kind, vol in (("MAGNITUDE", mag), ("PHASE", phase)):
        for k, img in enumerate(vol):
            frames.append(_item(
                PlanePositionSequence=[_item(ImagePositionPatient=[0.0, 0.0, 2.0 * k])],
                MRImageFrameTypeSequence=[_item(FrameType=["ORIGINAL", "PRIMARY", "T1", "NONE"],
                                                ComplexImageComponent=kind)]))
            pixels.append(img)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.stack(pixels).astype("<i2").tobytes()
    (tmp_path / "enh").mkdir()
    ds.save_as(str(tmp_path / "enh" / "enhanced.dcm"), enforce_file_format=True)
    scans, _ = discover_scans(tmp_path / "enh")
    assert len(scans) == 2
    arrays = sorted((s.load().array for s in scans), key=lambda a: float(a.min()))
    np.testing.assert_array_equal(arrays[0], phase)
    np.testing.assert_array_equal(arrays[1], mag)
