"""NIfTI reading and writing with nibabel; the affine and header travel with the Scan."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from denoise.io.errors import ScanReadError
from denoise.scan import Scan

__all__ = ["read_nifti", "write_nifti", "is_nifti_path"]

_MODALITY_HINTS = {"ct": "CT", "mr": "MR", "t1": "MR", "t2": "MR", "flair": "MR", "epi": "MR"}


def is_nifti_path(path: str | Path) -> bool:
    """True when the name ends in .nii or .nii.gz."""
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti(path: str | Path, *, modality: str | None = None) -> Scan:
    """Read a 2D/3D/4D NIfTI file into a Scan with array order ``(t, z, y, x)``.

    Args:
        path: a .nii or .nii.gz file.
        modality: "CT" or "MR"; guessed from the header description / file name when omitted.

    Raises:
        ScanReadError: the file is truncated, corrupt, holds NaN/inf or has an unsupported shape.
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise ScanReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    data = np.squeeze(data) if data.ndim > 4 else data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3, 4):
        raise ScanReadError(path, f"unsupported NIfTI shape {data.shape}")
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise ScanReadError(path, f"holds {bad} NaN/inf voxels; refusing to denoise undefined values")
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    array = np.ascontiguousarray(data.T)  # (x, y, z, t) -> (t, z, y, x)
    spatial = min(array.ndim, 3)
    spacing = tuple(reversed(zooms[:spatial]))
    header = img.header.copy()
    return Scan(
        array=array,
        spacing=spacing,
        affine=np.asarray(img.affine, dtype=np.float64),
        modality=modality or _guess_modality(path, header),
        meta={"format": "nifti", "nifti_header": header, "source": str(path),
              # the file's own scaling of its stored values (nibabel moves it off the loaded header)
              "nifti_scaling": (float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0)))},
    )


def write_nifti(scan: Scan, path: str | Path, *, keep_dtype: bool = False) -> Path:
    """Write ``scan`` as NIfTI at ``path`` (float32), keeping the source header when there is one.

    The affine, qform/sform codes, units and description of the source header are kept; the data
    type becomes float32 with no scaling, so denoised values are stored exactly. Singleton
    dimensions that `read_nifti` dropped (a ``(x, y, z, 1)`` or ``(x, y, 1)`` source) are put back,
    so the output has the same dimensions as the source.

    With ``keep_dtype`` an integer source keeps its data type and scaling (`integer_storage`):
    the values are rounded to the source's own grid of stored values (the quantisation the input
    already had), a quarter or half the size of float32; float32 stays where they do not fit.
    """
    path = Path(path)
    data = np.ascontiguousarray(scan.array.T)  # (t, z, y, x) -> (x, y, z, t)
    source_header = scan.meta.get("nifti_header")
    storage = integer_storage(source_header, data, scan.meta.get("nifti_scaling", (1.0, 0.0))) if keep_dtype else None
    if storage is not None:
        dtype, slope, inter = storage
        data = np.rint((data - inter) / slope).astype(dtype)
    if isinstance(source_header, nib.Nifti1Header):
        header = source_header.copy()
        data = _source_shape(data, tuple(int(d) for d in header.get_data_shape()))
        qcode = int(header["qform_code"])
        scode = int(header["sform_code"])
        img = nib.Nifti1Image(data, scan.affine, header=header)
        img.set_qform(scan.affine, code=qcode)
        img.set_sform(scan.affine, code=scode)
    else:
        img = nib.Nifti1Image(data, scan.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = f"{scan.modality} written by denoise".encode()[:79]
        img.set_qform(scan.affine, code=1)
        img.set_sform(scan.affine, code=1)
    if storage is None:
        img.set_data_dtype(np.float32)
        img.header.set_slope_inter(1.0, 0.0)
    else:  # the array already holds the stored integers
        img.set_data_dtype(storage[0])
        img.header.set_slope_inter(storage[1], storage[2])
    nib.save(img, str(path))
    return path


def integer_storage(header, data: np.ndarray, scaling: tuple[float, float] = (1.0, 0.0)) -> tuple[np.dtype, float, float] | None:
    """(dtype, slope, intercept) to store ``data`` as its source file did: the source header's
    integer data type and the file's ``scaling`` (slope, intercept: `read_nifti` keeps them in
    ``meta["nifti_scaling"]``), when every value, rounded to that grid, fits the type; None
    otherwise (a float or absent source, or values out of the type's range)."""
    if not isinstance(header, nib.Nifti1Header):
        return None
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "iu":
        return None
    slope, inter = (float(v) for v in scaling)
    slope = 1.0 if not np.isfinite(slope) or slope == 0 else slope
    inter = 0.0 if not np.isfinite(inter) else inter
    info = np.iinfo(dtype)
    lo, hi = np.rint((float(data.min()) - inter) / slope), np.rint((float(data.max()) - inter) / slope)
    if min(lo, hi) < info.min or max(lo, hi) > info.max:
        return None
    return dtype, slope, inter


def _source_shape(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``data`` in the source's ``shape`` when the two differ only by singleton dimensions."""
    if data.shape != shape and [d for d in data.shape if d != 1] == [d for d in shape if d != 1]:
        return data.reshape(shape)
    return data


def _guess_modality(path: Path, header: nib.Nifti1Header) -> str:
    descrip = bytes(header.get("descrip", b"")).decode("latin-1", "ignore").lower()
    name = path.name.lower()
    for text in (descrip, name):
        for token in re.split(r"[^a-z0-9]+", text):
            if token in _MODALITY_HINTS:
                return _MODALITY_HINTS[token]
    return "OT"
