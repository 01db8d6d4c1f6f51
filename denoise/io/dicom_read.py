"""Reading DICOM: series grouping, slice sorting by geometry, rescale, enhanced multi-frame, mosaics.

Every image becomes a *frame record* (one 2D image with its own geometry and rescale); frames are
grouped into stacks that share series, size, orientation and kind, sorted along the slice normal,
and split into time points when positions repeat. Errors name the file and the reason.

Copies of one object (same SOPInstanceUID and frame, e.g. the same image saved in two transfer
syntaxes) are read once; image kinds are kept apart by the header where any tag tells them apart
and by the values where none does (see `denoise.io.dicom_kinds`). What the reader noticed but
did not refuse goes into ``scan.meta["read_notes"]`` (short strings, file names only).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from denoise.io.dicom_decode import read_frames
from denoise.io.dicom_duplicates import duplicate_notes, split_duplicates
from denoise.io.dicom_kinds import frame_kinds, mixed_kinds_reason, negative_values_note
from denoise.io.dicom_write import RESEARCH_NOTE
from denoise.io.errors import NotAnImageError, ScanReadError
from denoise.scan import Scan

__all__ = ["DicomStack", "read_dicom_headers", "group_dicom", "load_stack"]

NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "SEG", "PR", "KO", "RTPLAN", "REG", "DOC", "RTRECORD", "FID"}
_POS_DECIMALS = 2  # positions equal to 0.01 mm are one slice position


@dataclass
class FrameRef:
    """One 2D image inside a file (frame 0 for classic single-frame files)."""

    path: Path
    frame: int
    header: Dataset  # per-frame classic-style header: geometry, rescale, UIDs; no pixel data
    position: np.ndarray
    orientation: np.ndarray  # 6 direction cosines (row, column)
    order_key: tuple = ()
    frame_type: tuple[str, ...] = ()  # an enhanced object's per-frame FrameType


@dataclass
class DicomStack:
    """Frames that form one scan (3D, or 4D when positions repeat).

    Attributes:
        frames: the frames read into the scan.
        notes: what grouping noticed (duplicate objects ignored), without paths; `load_stack`
            adds what it notices and puts them all in ``scan.meta["read_notes"]``.
        duplicates: (ignored copy, frame used instead) pairs: frames with the SOPInstanceUID and
            frame number of a frame first by file path. Never made into time points.
    """

    key: tuple
    frames: list[FrameRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duplicates: list[tuple[FrameRef, FrameRef]] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every file of the stack, the ignored duplicate copies included: the scan's input (its
        hash covers them, and whether their pixels differ goes into the read notes)."""
        return sorted({f.path for f in self.frames} | {d.path for d, _ in self.duplicates})

    @property
    def label(self) -> str:
        """A patient-free name for the series: number, description (less the research-use note
        of a series this package wrote), kind."""
        h = self.frames[0].header
        number = str(h.get("SeriesNumber", "") or "x")
        desc = str(h.get("SeriesDescription", "") or "").replace(f" - {RESEARCH_NOTE}", "").strip() or "series"
        kind = self.key[-1]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{desc}")[:40].strip("_")
        suffix = f"_{kind}" if kind else ""
        return f"S{number}_{safe or 'series'}{suffix}"


def read_dicom_headers(path: Path) -> list[FrameRef]:
    """Frame records of one DICOM file (one per frame for enhanced multi-frame objects).

    Raises:
        ScanReadError: the file is not DICOM or is corrupt.
        NotAnImageError: a DICOM object without image content (SR, RTSTRUCT, SEG, ...).
    """
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise ScanReadError(path, f"not a DICOM file ({exc})") from exc
    except Exception as exc:
        raise ScanReadError(path, f"corrupt or truncated DICOM header ({type(exc).__name__}: {exc})") from exc
    modality = str(ds.get("Modality", "")).upper()
    if modality in NON_IMAGE_MODALITIES:
        raise NotAnImageError(path, f"non-image DICOM object (Modality {modality}); skipped")
    if "Rows" not in ds or "Columns" not in ds:
        sop = ds.get("SOPClassUID")
        name = str(getattr(sop, "name", "")) if sop is not None else ""
        if name and name != str(sop) and "Image" not in name:
            raise NotAnImageError(path, f"non-image DICOM object ({name}); skipped")
        raise ScanReadError(path, "truncated or corrupt DICOM: no image attributes (Rows/Columns) and no known non-image class")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ScanReadError(path, "colour DICOM images are not supported (SamplesPerPixel != 1)")
    if "MOSAIC" in [str(v).upper() for v in ds.get("ImageType", [])]:
        return [_mosaic_frame(path, ds)]
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(path, ds)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frames = []
    for i in range(n_frames):
        pos, ori = _geometry(ds, path)
        if n_frames > 1:  # classic multi-frame: frames stacked along the normal
            step = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
            pos = pos + i * step * _normal(ori)
        frames.append(FrameRef(path, i, ds, pos, ori))
    return frames


def group_dicom(frames: Iterable[FrameRef]) -> list[DicomStack]:
    """Group frame records into stacks: same series, matrix size, orientation and image kind.

    A frame whose SOPInstanceUID and frame number repeat those of a frame first by file path is
    a duplicate copy: kept out of the stack's frames, listed in its ``duplicates`` and noted.
    """
    frames, duplicates = split_duplicates(sorted(frames, key=lambda f: (f.path, f.frame)))
    stacks: dict[tuple, DicomStack] = {}
    stack_of: dict[int, DicomStack] = {}
    for f, kind in zip(frames, frame_kinds(frames)):
        h = f.header
        # an anonymiser may empty the Series Instance UID: then folder, number and description tell series apart
        series = str(h.get("SeriesInstanceUID", "") or "") or (
            f"no-uid:{f.path.parent}:{h.get('SeriesNumber', '')}:{h.get('SeriesDescription', '')}")
        key = (
            series,
            str(f.path) if "PerFrameFunctionalGroupsSequence" in h else "",
            int(h.Rows),
            int(h.Columns),
            tuple(np.round(f.orientation, 3)),
            kind,
        )
        stack = stacks.setdefault(key, DicomStack(key))
        stack.frames.append(f)
        stack_of[id(f)] = stack
    for dup, orig in duplicates:
        stack_of[id(orig)].duplicates.append((dup, orig))
    for stack in stacks.values():
        if stack.duplicates:
            names = sorted({d.path.name for d, _ in stack.duplicates})
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            stack.notes.append(f"{len(names)} duplicate object{'s' if len(names) > 1 else ''} "
                               f"(same SOPInstanceUID) ignored: {shown}")
    return list(stacks.values())


def load_stack(stack: DicomStack) -> Scan:
    """Read the pixels of one stack into a Scan: sorted along the normal, rescaled, 3D or 4D."""
    frames = stack.frames
    first = frames[0]
    normal = _normal(first.orientation)
    dist = {id(f): round(float(np.dot(f.position, normal)), _POS_DECIMALS) for f in frames}
    by_pos: dict[float, list[FrameRef]] = defaultdict(list)
    for f in frames:
        by_pos[dist[id(f)]].append(f)
    positions = sorted(by_pos)
    counts = {len(v) for v in by_pos.values()}
    if len(counts) != 1:
        raise ScanReadError(
            first.path,
            f"series '{stack.label}' has {len(frames)} images over {len(positions)} positions with "
            f"unequal repeats {sorted(counts)}; cannot form a volume or time series",
        )
    n_t = counts.pop()
    for group in by_pos.values():
        group.sort(key=_time_key)
    ordered = [by_pos[p][t] for t in range(n_t) for p in positions]
    pixels = read_frames(ordered)
    rows, cols = int(first.header.Rows), int(first.header.Columns)
    array = pixels.reshape(n_t, len(positions), rows, cols)
    modality = str(first.header.get("Modality", "OT")).upper()
    notes = list(stack.notes) + duplicate_notes(stack.duplicates, ordered, pixels)
    if modality == "MR":
        why = mixed_kinds_reason(array)
        if why:
            raise ScanReadError(
                first.path,
                f"series '{stack.label}' mixes image kinds: {why} (a field map or phase image stored "
                f"with its magnitude?); split the series by image kind (e.g. convert it with dcm2niix) "
                f"and denoise the magnitude images alone",
            )
        note = negative_values_note(array)
        if note:
            notes.append(note)
    if n_t == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    dy, dx = _pixel_spacing(first.header)
    if len(positions) > 1:
        gaps = np.diff(positions)
        dz = float(np.median(gaps))
        if np.max(np.abs(gaps - dz)) > 0.1 * abs(dz) + 1e-3:
            notes.append(f"series '{stack.label}' has uneven slice spacing (min {gaps.min():.3g} mm, "
                         f"max {gaps.max():.3g} mm): missing slices?")
    else:
        dz = float(first.header.get("SpacingBetweenSlices", first.header.get("SliceThickness", 1.0)) or 1.0)
    affine = _affine(first.orientation, by_pos[positions[0]][0].position, (dz, dy, dx))
    spacing = (abs(dz), dy, dx) if array.ndim >= 3 else (dy, dx)
    headers = [f.header for f in ordered]
    return Scan(
        array=array,
        spacing=spacing,
        affine=affine,
        modality=modality if modality in ("CT", "MR") else "OT",
        meta={
            "format": "dicom",
            "dicom_headers": headers,
            "dicom_frames": [(str(f.path), f.frame) for f in ordered],
            "source": str(first.path.parent),
            "series_label": stack.label,
            "transfer_syntax": str(getattr(first.header.file_meta, "TransferSyntaxUID", "")),
            "read_notes": notes,
        },
    )


# --- helpers ---------------------------------------------------------------------------------


def _time_key(f: FrameRef) -> tuple:
    h = f.header
    def num(name: str) -> float:
        v = h.get(name)
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.inf
    return (num("TemporalPositionIdentifier"), num("AcquisitionNumber"), str(h.get("AcquisitionTime", "")),
            num("InstanceNumber"), f.frame)


def _geometry(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        ori = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
    except AttributeError:
        # Secondary captures etc. have no geometry: a single axial plane at the origin.
        ori = np.array([1.0, 0, 0, 0, 1.0, 0])
        pos = np.zeros(3)
    if ori.shape != (6,) or pos.shape != (3,):
        raise ScanReadError(path, "malformed ImageOrientationPatient / ImagePositionPatient")
    return pos, ori


def _normal(ori: np.ndarray) -> np.ndarray:
    return np.cross(ori[:3], ori[3:])


def _pixel_spacing(h: Dataset) -> tuple[float, float]:
    ps = h.get("PixelSpacing") or h.get("ImagerPixelSpacing") or [1.0, 1.0]
    return float(ps[0]), float(ps[1])


def _affine(ori: np.ndarray, pos0: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel (i=column, j=row, k=slice) -> RAS mm; DICOM LPS flipped to RAS."""
    dz, dy, dx = spacing
    lps = np.eye(4)
    lps[:3, 0] = ori[:3] * dx
    lps[:3, 1] = ori[3:] * dy
    lps[:3, 2] = _normal(ori) * dz
    lps[:3, 3] = pos0
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _enhanced_frames(path: Path, ds: Dataset) -> list[FrameRef]:
    """Flatten an enhanced multi-frame object into classic per-frame headers."""
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    base = Dataset()
    for elem in ds:
        if elem.tag not in ((0x5200, 0x9229), (0x5200, 0x9230)):
            base.add(elem)
    base.file_meta = ds.file_meta
    frames = []
    for i, item in enumerate(per_frame):
        h = copy.deepcopy(base)
        h.file_meta = ds.file_meta
        for group in (shared, item):
            for seq_name, attrs in _FUNCTIONAL_GROUPS.items():
                if seq_name in group and len(group[seq_name].value):
                    sub = group[seq_name].value[0]
                    for a in attrs:
                        if a in sub:
                            setattr(h, a, sub[a].value)
        h.NumberOfFrames = 1
        frame_type: tuple[str, ...] = ()
        for group in (shared, item):
            for seq_name in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
                if seq_name in group and len(group[seq_name].value):
                    sub = group[seq_name].value[0]
                    frame_type = tuple(str(v) for v in sub.get("FrameType", frame_type))
                    if "ComplexImageComponent" in sub:
                        h.ComplexImageComponent = sub.ComplexImageComponent
        if "FrameContentSequence" in item:
            fc = item.FrameContentSequence[0]
            if "TemporalPositionIndex" in fc:
                h.TemporalPositionIdentifier = int(fc.TemporalPositionIndex)
        pos, ori = _geometry(h, path)
        frames.append(FrameRef(path, i, h, pos, ori, frame_type=frame_type))
    return frames


_FUNCTIONAL_GROUPS = {
    "PlanePositionSequence": ["ImagePositionPatient"],
    "PlaneOrientationSequence": ["ImageOrientationPatient"],
    "PixelMeasuresSequence": ["PixelSpacing", "SliceThickness", "SpacingBetweenSlices"],
    "PixelValueTransformationSequence": ["RescaleSlope", "RescaleIntercept", "RescaleType"],
    "FrameVOILUTSequence": ["WindowCenter", "WindowWidth"],
    "MREchoSequence": ["EffectiveEchoTime"],
    # what a classic MR header carries (the derived series is classic; denoise.io.dicom_conform)
    "MRTimingAndRelatedParametersSequence": ["RepetitionTime", "EchoTrainLength", "FlipAngle"],
    "MRModifierSequence": ["InversionRecovery"],
}


def _mosaic_frame(path: Path, ds: Dataset) -> FrameRef:
    n = ds.get((0x0019, 0x100A))
    reason = (
        "Siemens mosaic image: demosaicing needs the number of images (0019,100A) and the CSA "
        "slice normal; convert it with dcm2niix first"
    )
    if n is None:
        raise ScanReadError(path, reason + " (the count tag is missing)")
    raise ScanReadError(path, reason + f" ({int(n.value)} tiles in one image; mosaics are refused, not flattened)")
