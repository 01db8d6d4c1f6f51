"""What kind of image a DICOM frame holds, and value checks that one MR stack holds one kind.

Images of one series that share positions but are different kinds (magnitude, phase, field map,
real, imaginary, echoes, b-values) must never be stacked as time points. The header tells the
kinds apart where any tag does (`frame_kinds`); where none does, `mixed_kinds_reason` looks at
the values of the time points of a 4D MR stack, and `negative_values_note` flags an MR scan
whose values look like phase, a field map or real/imaginary data rather than magnitude.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

if TYPE_CHECKING:
    from denoise.io.dicom_read import FrameRef

__all__ = ["frame_kinds", "ge_image_type", "mixed_kinds_reason", "negative_values_note"]

_TOKENS = ("M", "P", "R", "I", "PHASE", "MAGNITUDE", "REAL", "IMAGINARY", "FIELD_MAP", "B0", "ADC", "TRACEW", "FA")
_GE_TYPES = {0: "M", 1: "P", 2: "R", 3: "I"}  # GE (0043,xx2F) in the GEMS_PARM_01 block
_COMPLEX = {"MAGNITUDE": "M", "PHASE": "P", "REAL": "R", "IMAGINARY": "I", "MIXED": "MIXED"}

NEGATIVE_SUBSTANTIAL = 0.05  # more than 5% of the values below zero: not a magnitude image
NEGATIVE_NONE = 0.001  # at most 0.1% below zero: "none" (a magnitude image has exactly none)
RANGE_RATIO = 20.0  # robust ranges (1st-99th percentile) of time points differing more: two kinds
_SAMPLE = 200_000  # voxels per time point used for the percentiles


def frame_kinds(frames: Sequence[FrameRef]) -> list[str]:
    """The kind of each frame, the part of the grouping key that keeps kinds apart.

    Always part of it: ImageType tokens (M/P/R/I, PHASE, FIELD_MAP, ADC ...), echo number and
    b-value, as before. Added only within a series where they differ between frames, so that a
    uniform series keeps its name: GE's private image type (0043,xx2F), a RescaleType such as
    ``HZ`` or ``RAD``, and an enhanced object's per-frame FrameType and ComplexImageComponent.
    """
    extras = [_extra_kind(f.header, f.frame_type) for f in frames]
    by_series: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for f, extra in zip(frames, extras):
        by_series[str(f.header.get("SeriesInstanceUID", ""))].add(extra)
    out = []
    for f, extra in zip(frames, extras):
        parts = _base_kind(f.header)
        if len(by_series[str(f.header.get("SeriesInstanceUID", ""))]) > 1:
            parts += [p for p in extra if p not in parts]
        out.append("-".join(parts))
    return out


def _base_kind(h: Dataset) -> list[str]:
    parts = []
    image_type = [str(v).upper() for v in h.get("ImageType", [])]
    for token in _TOKENS:
        if token in image_type[2:]:
            parts.append(token)
    echo = h.get("EchoNumbers")
    if echo not in (None, "", 1, "1"):
        parts.append(f"e{echo}")
    bval = h.get((0x0018, 0x9087))
    if bval is not None and bval.value not in (None, ""):
        parts.append(f"b{float(bval.value):g}")
    return parts


def _extra_kind(h: Dataset, frame_type: tuple[str, ...]) -> tuple[str, ...]:
    parts = []
    ge = ge_image_type(h)
    if ge is not None:
        parts.append(_GE_TYPES.get(ge, f"ge{ge}"))
    complex_part = str(h.get("ComplexImageComponent", "") or "").upper()
    if complex_part:
        parts.append(_COMPLEX.get(complex_part, complex_part))
    for token in _TOKENS:
        if token in [str(v).upper() for v in frame_type[2:]]:
            parts.append(token)
    rescale_type = "".join(c for c in str(h.get("RescaleType", "") or "").upper() if c.isalnum())[:12]
    if rescale_type not in ("", "US"):  # US: unspecified
        parts.append(rescale_type)
    return tuple(dict.fromkeys(parts))


def ge_image_type(h: Dataset) -> int | None:
    """GE's private image type (0043,xx2F) of the ``GEMS_PARM_01`` block: 0 magnitude, 1 phase,
    2 real, 3 imaginary; None when the block or the element is absent or unreadable."""
    try:
        block = h.private_block(0x0043, "GEMS_PARM_01")
        if 0x2F not in block:
            return None
        value = block[0x2F].value
    except (KeyError, ValueError):
        return None
    try:
        if isinstance(value, bytes):  # VR UN (implicit VR file without the private dictionary)
            return int.from_bytes(value[:2], "little", signed=True) if len(value) >= 2 else None
        if isinstance(value, (MultiValue, list, tuple)):
            value = value[0]
        return int(value)
    except (TypeError, ValueError, IndexError):
        return None


def mixed_kinds_reason(array: np.ndarray) -> str | None:
    """Why the time points of a 4D MR stack ``(t, z, y, x)`` look like different image kinds.

    None when they look alike. Different kinds: one time point has more than 5% of its values
    below zero and another none (magnitude has no negative values, phase and field maps about
    half), checked per volume and per slice position (in case the time order differs between
    positions), or their 1st-99th percentile ranges differ more than 20-fold (radians beside
    scanner units). A genuine time series of magnitude images passes: noise never makes a
    magnitude value negative.
    """
    n_t, n_z = array.shape[:2]
    if n_t < 2:
        return None
    per_image = (array < 0).sum(axis=(-2, -1)) / float(array.shape[-2] * array.shape[-1])  # (t, z)
    per_volume = per_image.mean(axis=1)
    hi, lo = int(np.argmax(per_volume)), int(np.argmin(per_volume))
    if per_volume[hi] > NEGATIVE_SUBSTANTIAL and per_volume[lo] <= NEGATIVE_NONE:
        return (f"time point {hi + 1} has {per_volume[hi]:.0%} of its values below zero, "
                f"time point {lo + 1} {_none(per_volume[lo])}")
    for z in range(n_z):
        hi, lo = int(np.argmax(per_image[:, z])), int(np.argmin(per_image[:, z]))
        if per_image[hi, z] > NEGATIVE_SUBSTANTIAL and per_image[lo, z] <= NEGATIVE_NONE:
            return (f"at slice {z + 1} the image of time point {hi + 1} has {per_image[hi, z]:.0%} of its values "
                    f"below zero, that of time point {lo + 1} {_none(per_image[lo, z])}")
    ranges = np.array([_robust_range(v) for v in array])
    valid = np.flatnonzero(ranges > 0)
    if len(valid) >= 2:
        big, small = valid[np.argmax(ranges[valid])], valid[np.argmin(ranges[valid])]
        if ranges[big] > RANGE_RATIO * ranges[small]:
            return (f"the value ranges (1st-99th percentile) of time point {big + 1} ({ranges[big]:.4g}) and "
                    f"time point {small + 1} ({ranges[small]:.4g}) differ {ranges[big] / ranges[small]:.0f}-fold")
    return None


def negative_values_note(array: np.ndarray) -> str | None:
    """A note for an MR scan with a substantial share of values below zero (not magnitude)."""
    frac = float(np.count_nonzero(array < 0)) / max(array.size, 1)
    if frac <= NEGATIVE_SUBSTANTIAL:
        return None
    return (f"MR values below zero in {frac:.0%} of voxels: a phase, field-map or real/imaginary image? "
            f"the MR models were trained on magnitude images")


def _none(frac: float) -> str:
    return "none" if frac == 0 else f"almost none ({frac:.2%})"


def _robust_range(volume: np.ndarray) -> float:
    flat = volume.ravel()
    flat = flat[:: max(1, flat.size // _SAMPLE)]
    p1, p99 = np.percentile(flat, [1, 99])
    return float(p99 - p1)
