"""Shared fixtures: tiny phantoms, DICOM series written independently with pydicom, NIfTI files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and CI has 2 cores)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def phantom_2d() -> np.ndarray:
    return (resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True) * 1000).astype(np.float32)


@pytest.fixture
def phantom_3d() -> np.ndarray:
    z, y, x = np.ogrid[-1:1:16j, -1:1:24j, -1:1:24j]
    vol = np.zeros((16, 24, 24), np.float32)
    vol[(z / 0.9) ** 2 + (y / 0.8) ** 2 + (x / 0.8) ** 2 <= 1] = 600
    vol[(z / 0.4) ** 2 + ((y - 0.2) / 0.3) ** 2 + (x / 0.3) ** 2 <= 1] = 1000
    return vol


def write_dicom_slices(folder: Path, volume: np.ndarray, *, modality: str = "MR", series_uid: str | None = None,
                       study_uid: str | None = None, names: list[str] | None = None, slope: float = 1.0,
                       intercept: float = 0.0, signed: bool = False, spacing=(2.0, 1.0, 1.0),
                       extra: dict | None = None, positions_z: list[float] | None = None,
                       instance_offset: int = 0, big_endian: bool = False) -> list[Path]:
    """Classic single-frame DICOM files written straight with pydicom (independent of denoise)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    paths = []
    for k, img in enumerate(volume):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if not big_endian else pydicom.uid.ExplicitVRBigEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality = modality
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "PID12345"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 5
        ds.SeriesDescription = "test series"
        ds.InstanceNumber = k + 1 + instance_offset
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        z = positions_z[k] if positions_z is not None else k * spacing[0]
        ds.ImagePositionPatient = [-10.0, -20.0, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = img.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        for key, val in (extra or {}).items():
            setattr(ds, key, val(k) if callable(val) else val)
        stored = np.rint((img - intercept) / slope).astype(np.int16 if signed else np.uint16)
        ds.PixelData = stored.astype(stored.dtype.newbyteorder(">") if big_endian else stored.dtype).tobytes()
        name = names[k] if names else f"slice{k:03d}.dcm"
        path = folder / name
        ds.save_as(str(path), implicit_vr=False, little_endian=not big_endian, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def dicom_series(tmp_path, phantom_3d) -> Path:
    folder = tmp_path / "series"
    write_dicom_slices(folder, phantom_3d)
    return folder


@pytest.fixture
def nifti_file(tmp_path, phantom_3d) -> Path:
    affine = np.array([[-0.9, 0, 0, 10], [0, 1.1, 0.1, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(phantom_3d.T.astype(np.int16), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "vol_mr.nii.gz"
    nib.save(img, str(path))
    return path


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def tiny_training_set(tmp_path, phantom_3d) -> tuple[Path, Path]:
    """(folder of three small MR NIfTI volumes, YAML config for a tiny fast model)."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        nib.save(nib.Nifti1Image((phantom_3d * (1 + i / 5)).T.copy(), np.eye(4)), str(data / f"s{i}_mr.nii.gz"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  channels: [4, 8]\ntrain:\n  patch_size: 16\n  batch_size: 4\n  val_patches: 4\n")
    return data, cfg
