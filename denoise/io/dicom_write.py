"""Writing a Scan as a DICOM *derived* series (new UIDs, DERIVED\\SECONDARY, Source Image Sequence)."""

from __future__ import annotations

import copy
import datetime
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from denoise.io.dicom_conform import conform_derived, valid_uid
from denoise.scan import Scan

log = logging.getLogger(__name__)

__all__ = ["write_dicom_series", "needs_study_uid", "source_sop", "series_description", "is_denoise_output",
           "RESEARCH_NOTE", "MADE_BY"]

RESEARCH_NOTE = "RESEARCH USE ONLY"
MADE_BY = "Made by the denoise toolkit."  # ends every DerivationDescription this writer makes (`is_denoise_output`)
_DESCRIPTION_LEN = 64  # SeriesDescription is LO: at most 64 characters
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_CLASSIC = {
    "1.2.840.10008.5.1.4.1.1.4.1": "1.2.840.10008.5.1.4.1.1.4",  # Enhanced MR -> MR Image
    "1.2.840.10008.5.1.4.1.1.4.4": "1.2.840.10008.5.1.4.1.1.4",  # Legacy Converted Enhanced MR -> MR Image
    "1.2.840.10008.5.1.4.1.1.2.1": "1.2.840.10008.5.1.4.1.1.2",  # Enhanced CT -> CT Image
    "1.2.840.10008.5.1.4.1.1.2.2": "1.2.840.10008.5.1.4.1.1.2",  # Legacy Converted Enhanced CT -> CT Image
}
_SOP_FOR_MODALITY = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_DROP = ("PixelData", "LargestImagePixelValue", "SmallestImagePixelValue", "PixelPaddingValue",
         "PixelPaddingRangeLimit", "NumberOfFrames", "ReferencedImageSequence", "SourceImageSequence",
         "DerivationCodeSequence", "DerivationDescription", "IconImageSequence", "RealWorldValueMappingSequence")


def write_dicom_series(scan: Scan, folder: str | Path, *, description: str = "denoised",
                       series_offset: int = 1000) -> list[Path]:
    """Write ``scan`` into ``folder`` as a new derived series, one file per slice.

    Patient/study tags and geometry come from the source headers (``scan.meta["dicom_headers"]``)
    when the scan was read from DICOM; otherwise a fresh study is made from the affine. The header
    is made valid whatever the source lacked (`denoise.io.dicom_conform`): an anonymised source
    without SOP Class UID takes its file meta's (else the modality's storage class); one without
    Study Instance UID gets ``scan.meta["new_study_uid"]`` (made here if absent) and one without
    Frame of Reference UID a new one, shared by all files of the series; invalid UIDs are
    replaced by derived ones. Pixels: CT (and any source that stores through a rescale) keeps the
    source's bit depth and rescale, or a per-slice one where the values do not fit, so the float
    values round-trip to within one stored step; MR without a rescale in the source is stored as
    rounded integers with identity rescale (Modality LUTs are not part of the MR IOD and some
    viewers ignore them), widening Bits Stored (up to Bits Allocated) rather than clipping.

    Args:
        scan: the scan to write; 2D, 3D or 4D.
        folder: output folder (created); existing files with the same names are overwritten.
        description: what was done, e.g. ``"denoised mr-2d"``; goes into SeriesDescription (see
            `series_description`) and DerivationDescription together with the research-use note.
        series_offset: SeriesNumber = the source's + this (a noise map written beside a denoised
            series takes another offset, so the two series have distinct numbers).

    A series made from a DICOM source records where it came from: Source Image Sequence (each
    image's source image) and Related Series Sequence (the source series, and the series that one
    was made from, if it was written here too), so a derived series can be paired with the
    original it derives from (`denoise.pairing`) even after several steps.

    Returns:
        The written file paths, in slice order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = scan.array.reshape(-1, *scan.array.shape[-2:])
    headers = scan.meta.get("dicom_headers") or _fresh_headers(scan, len(images))
    if len(headers) != len(images):
        raise ValueError(f"{len(headers)} DICOM headers for {len(images)} images")
    frames = scan.meta.get("dicom_frames") or [(None, 0)] * len(images)
    from_dicom = bool(scan.meta.get("dicom_headers"))
    uids = {"series": generate_uid(),
            "study": shared_uid(headers, "StudyInstanceUID") or scan.meta.get("new_study_uid") or generate_uid(),
            "frame": shared_uid(headers, "FrameOfReferenceUID") or scan.meta.get("new_frame_uid") or generate_uid()}
    first = headers[0]
    layout = None  # MR from DICOM without a rescale: one integer layout for the whole series
    # (a map whose fractions matter, meta keep_fraction: an uncertainty map, goes through a rescale)
    if from_dicom and str(first.get("Modality", "")) == "MR" and not _has_rescale(first) and not scan.meta.get("keep_fraction"):
        layout = _integer_layout(scan.array, *_source_bits(first))
    now = datetime.datetime.now()
    paths = []
    for index, (img, src, (_, frame)) in enumerate(zip(images, headers, frames)):
        ds = _derived_header(src, uids, description, index, frame, now, from_dicom, series_offset)
        _set_pixels(ds, src, img, layout=layout, fraction=bool(scan.meta.get("keep_fraction")))
        if scan.meta.get("keep_fraction"):  # a map, not an image: the source's window would hide it
            for kw in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"):
                if kw in ds:
                    delattr(ds, kw)
        path = folder / f"IM{index + 1:05d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def needs_study_uid(scan: Scan) -> bool:
    """Whether writing ``scan`` as DICOM creates a Study Instance UID (no source header has one)."""
    headers = scan.meta.get("dicom_headers") or []
    return bool(headers) and not shared_uid(headers, "StudyInstanceUID")


def shared_uid(headers: list[Dataset], keyword: str) -> str:
    """The UID (e.g. Study Instance UID) most of ``headers`` carry, for the files that lack it; ''
    if none does. Invalid values count too: `conform_derived` maps them to the same valid UID."""
    values = [str(h.get(keyword, "") or "") for h in headers]
    values = [v for v in values if v]
    return max(set(values), key=values.count) if values else ""


def is_denoise_output(header: Dataset) -> bool:
    """Whether a DICOM header is one this writer made (its DerivationDescription says so)."""
    return MADE_BY in str(header.get("DerivationDescription", "") or "")


def series_description(old: str, description: str) -> str:
    """A derived series' SeriesDescription: the source's (less an earlier research-use note), what
    was done and the research-use note, within DICOM's 64 characters. Where they do not fit, the
    source's last words are left out (what was done is kept whole beside as much of the source's
    name as fits), then what was done is shortened beside the source's first word. Words of what
    was done are kept whole or left out; the source's first word (its name) may be cut after an
    ``_`` or ``-`` (``t1_mprage_sag_p2`` -> ``t1_mprage``), never mid-word. The note is always kept."""
    note = f" - {RESEARCH_NOTE}"
    room = _DESCRIPTION_LEN - len(note)
    source = old.replace(note, " ").replace(RESEARCH_NOTE, " ").split()
    done = description.split()
    words = source + done
    if len(" ".join(words)) > room:
        kept = _shorten(source, room - len(" ".join(done)) - 1, "_-")
        if kept:
            words = kept + done
        else:  # what was done alone nearly fills the room: the source's first word and what fits of it
            first = _shorten(source[:1], min(24, room // 2), "_-")
            words = first + _shorten(done, room - len(" ".join(first)) - (1 if first else 0), "")
    text = " ".join(words) or description[:room].strip()
    return f"{text}{note}" if text else RESEARCH_NOTE


def _shorten(words: list[str], space: int, separators: str) -> list[str]:
    """The longest start of ``words`` that fits in ``space`` characters; a first word that does not
    fit whole is kept up to its last ``separators`` character that fits, if any."""
    out: list[str] = []
    for w in words:
        left = space - len(" ".join(out)) - (1 if out else 0)
        if len(w) <= left:
            out.append(w)
            continue
        cut = max((w.rfind(c, 0, left + 1) for c in separators), default=-1) if left > 0 and not out else -1
        if cut > 0:
            out.append(w[:cut])
        break
    return out


def source_sop(src: Dataset) -> tuple[str, str]:
    """The source's (SOP Class UID, SOP Instance UID): the data set's, else its file meta's
    (anonymisers may empty the data set's copies); '' where neither is a valid UID."""
    meta = getattr(src, "file_meta", None) or Dataset()
    out = []
    for own, media in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        value = str(src.get(own, "") or "")
        if not valid_uid(value):
            value = str(meta.get(media, "") or "")
        out.append(value if valid_uid(value) else "")
    return out[0], out[1]


def _derived_header(src: Dataset, uids: dict[str, str], description: str, index: int, frame: int,
                    now: datetime.datetime, from_dicom: bool, series_offset: int = 1000) -> Dataset:
    ds = Dataset()
    for elem in src:
        if elem.keyword not in _DROP and elem.tag.group != 0x0002:
            ds.add(copy.deepcopy(elem))
    src_sop_class, src_sop_uid = source_sop(src)
    stored_as = src_sop_class or _SOP_FOR_MODALITY.get(str(src.get("Modality", "") or ""), _SECONDARY_CAPTURE)
    sop_class = _CLASSIC.get(stored_as, stored_as)
    sop_uid = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = uids["series"]
    if not str(ds.get("StudyInstanceUID", "") or ""):
        ds.StudyInstanceUID = uids["study"]
    if not str(ds.get("FrameOfReferenceUID", "") or "") and "ImagePositionPatient" in ds:
        ds.FrameOfReferenceUID = uids["frame"]
    ds.SeriesNumber = (int(src.get("SeriesNumber", 0) or 0) + series_offset) % 2**31  # IS: at most 2^31 - 1
    ds.InstanceNumber = index + 1
    rest = [str(v) for v in src.get("ImageType", [])][2:]
    ds.ImageType = ["DERIVED", "SECONDARY", *rest]
    ds.SeriesDescription = series_description(str(src.get("SeriesDescription", "") or ""), description)
    ds.DerivationDescription = f"{description} - {RESEARCH_NOTE}; not for diagnostic use. {MADE_BY}"[-1024:]
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.BurnedInAnnotation = "NO"
    if from_dicom and src_sop_class and src_sop_uid:
        item = Dataset()
        item.ReferencedSOPClassUID = src_sop_class
        item.ReferencedSOPInstanceUID = src_sop_uid
        if src_sop_class in _CLASSIC:
            item.ReferencedFrameNumber = frame + 1
        item.PurposeOfReferenceCodeSequence = Sequence([_source_purpose()])
        ds.SourceImageSequence = Sequence([item])
    if from_dicom:
        _relate_source_series(ds, src, uids["study"])
    for problem in conform_derived(ds):
        log.warning("derived DICOM header: repair skipped (%s)", problem)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def _source_purpose() -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _SOURCE_PURPOSE
    return code


def _relate_source_series(ds: Dataset, src: Dataset, study: str) -> None:
    """Add the source series to Related Series Sequence (General Series module, Type 3), after the
    items copied from the source (the series it was made from, when this writer made it)."""
    series = str(src.get("SeriesInstanceUID", "") or "")
    if not series:  # an anonymiser emptied it: nothing to refer to
        return
    items = list(ds.get("RelatedSeriesSequence", []))
    if any(str(it.get("SeriesInstanceUID", "")) == series for it in items):
        return
    item = Dataset()
    item.StudyInstanceUID = str(src.get("StudyInstanceUID", "") or "") or study
    item.SeriesInstanceUID = series
    item.PurposeOfReferenceCodeSequence = Sequence([_source_purpose()])
    ds.RelatedSeriesSequence = Sequence([*items, item])


def _source_bits(src: Dataset) -> tuple[int, int, bool]:
    """(Bits Allocated, Bits Stored, signed) to start from: the source's; CT and MR images are 16-bit
    (their IODs allow no other Bits Allocated), with the source's Bits Stored."""
    bits_alloc = int(src.get("BitsAllocated", 16) or 16)
    if bits_alloc not in (8, 16) or str(src.get("Modality", "")) in ("CT", "MR"):
        bits_alloc = 16
    bits_stored = min(int(src.get("BitsStored", bits_alloc) or bits_alloc), bits_alloc)
    signed = int(src.get("PixelRepresentation", 1 if bits_alloc == 16 else 0) or 0) == 1
    return bits_alloc, bits_stored, signed


def _has_rescale(src: Dataset) -> bool:
    """Whether the source stores its pixels through a non-identity Modality LUT."""
    return (float(src.get("RescaleSlope", 1.0) or 1.0), float(src.get("RescaleIntercept", 0.0) or 0.0)) != (1.0, 0.0)


def _set_pixels(ds: Dataset, src: Dataset, img: np.ndarray, *, layout: tuple[int, int, bool] | None = None,
                fraction: bool = False) -> None:
    """Pixel Data and the Image Pixel / Modality LUT attributes for ``img``. With ``layout`` (MR
    from DICOM stored without a rescale; `_integer_layout` of the whole series) rounded values
    with no Modality LUT; otherwise the source's rescale, or a per-slice one where it cannot hold
    the values or where the source had none and the values are not integers (a NIfTI written as
    DICOM). ``fraction``: always a per-slice rescale over the stored range (a map whose fractions
    of a unit matter, such as an uncertainty map)."""
    bits_alloc, bits_stored, signed = layout or _source_bits(src)
    slope = float(src.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(src.get("RescaleIntercept", 0.0) or 0.0)
    lo, hi = _stored_range(bits_stored, signed)
    vmin, vmax = float(img.min()), float(img.max())
    fit = fraction or ("RescaleSlope" not in src and not np.array_equal(img, np.rint(img))) or (
        (vmin - intercept) / slope < lo - 0.5 or (vmax - intercept) / slope > hi + 0.5)
    if layout is None and fit:
        # spread the values over the stored range
        span = max(vmax - vmin, 1e-6)
        slope = span / (hi - lo)
        intercept = vmin - lo * slope
    stored = np.clip(np.rint((img.astype(np.float64) - intercept) / slope), lo, hi)
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[(bits_alloc, signed)]
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.SamplesPerPixel = 1
    if str(src.get("PhotometricInterpretation", "MONOCHROME2")) not in ("MONOCHROME1", "MONOCHROME2"):
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        ds.PhotometricInterpretation = str(src.get("PhotometricInterpretation", "MONOCHROME2"))
    ds.Rows, ds.Columns = img.shape
    if layout is not None:  # MR: the stored values are the values; no Modality LUT
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if kw in ds:
                delattr(ds, kw)
        ds.PixelData = stored.astype(dtype).tobytes()
        return
    ds.RescaleSlope = f"{slope:.10g}"[:16]
    ds.RescaleIntercept = f"{intercept:.10g}"[:16]
    # DS strings are limited to 16 chars: use the values actually written.
    slope_w, icpt_w = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    if (slope_w, icpt_w) != (slope, intercept):
        stored = np.clip(np.rint((img.astype(np.float64) - icpt_w) / slope_w), lo, hi)
    ds.PixelData = stored.astype(dtype).tobytes()
    if "RescaleType" not in ds and ds.get("Modality") == "CT":
        ds.RescaleType = "HU"


def _stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest stored value of ``bits_stored`` bits, signed or not."""
    return (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)


def _integer_layout(img: np.ndarray, bits_alloc: int, bits_stored: int, signed: bool) -> tuple[int, int, bool] | None:
    """(Bits Allocated, Bits Stored, signed) that hold ``img`` (the whole series) rounded, starting
    from the source's: signed where values are negative (a noise map; denoised values dipping below
    zero), unsigned where a signed source's values are all >= 0 but exceed its signed range, more
    bits stored (up to 16) where they exceed the source's range. None where 16 bits cannot hold
    them (the series is then stored through a rescale)."""
    lo_v, hi_v = int(np.floor(float(img.min()) + 0.5)), int(np.floor(float(img.max()) + 0.5))
    if lo_v < 0 and not signed:
        signed, bits_alloc, bits_stored = True, 16, 16
    lo, hi = _stored_range(bits_stored, signed)
    if lo_v < lo or hi_v > hi:
        bits_alloc = bits_stored = 16
        if signed and lo_v >= 0 and hi_v > 2**15 - 1:
            signed = False
        lo, hi = _stored_range(16, signed)
    return (bits_alloc, bits_stored, signed) if lo <= lo_v and hi_v <= hi else None


def _fresh_headers(scan: Scan, n: int) -> list[Dataset]:
    """Headers for a scan that did not come from DICOM: a new anonymous study, geometry from affine."""
    study_uid, frame_uid = generate_uid(), generate_uid()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ scan.affine
    spacing = scan.spacing
    dx, dy = spacing[-1], spacing[-2]
    dz = spacing[0] if len(spacing) == 3 else 1.0
    row = lps[:3, 0] / max(np.linalg.norm(lps[:3, 0]), 1e-12)
    col = lps[:3, 1] / max(np.linalg.norm(lps[:3, 1]), 1e-12)
    nz = scan.array.shape[-3] if scan.array.ndim >= 3 else 1
    headers = []
    for i in range(n):
        z = i % nz
        h = Dataset()
        h.SOPClassUID = _SOP_FOR_MODALITY.get(scan.modality, _SECONDARY_CAPTURE)
        h.Modality = scan.modality if scan.modality in ("CT", "MR") else "OT"
        if h.Modality == "OT":
            h.ConversionType = "WSD"  # Secondary Capture: a workstation made it
        h.PatientName = "ANONYMOUS"
        h.PatientID = "ANON"
        h.StudyInstanceUID = study_uid
        h.FrameOfReferenceUID = frame_uid
        h.StudyDate = datetime.date.today().strftime("%Y%m%d")
        h.SeriesNumber = 1
        h.SeriesDescription = str(scan.meta.get("series_label", "") or "")
        h.ImageType = ["DERIVED", "SECONDARY"]
        h.ImagePositionPatient = [f"{v:.6g}" for v in (lps[:3, 3] + z * lps[:3, 2])]
        h.ImageOrientationPatient = [f"{v:.6g}" for v in (*row, *col)]
        h.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
        h.SliceThickness = f"{abs(dz):.6g}"
        h.SpacingBetweenSlices = f"{abs(dz):.6g}"
        h.BitsAllocated = 16
        h.BitsStored = 16
        h.PixelRepresentation = 1
        h.PhotometricInterpretation = "MONOCHROME2"
        if scan.is_timeseries:
            h.TemporalPositionIdentifier = i // nz + 1
        headers.append(h)
    return headers
