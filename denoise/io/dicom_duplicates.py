"""Copies of one DICOM object in one folder: read once, never stacked as fake time points.

The same image saved twice (an explicit-VR and an implicit-VR copy, a compressed copy ...) keeps
its SOPInstanceUID; both copies share the series and the slice position, so without this they
would become two time points of a 4D scan (or an error when only some slices are copied).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from denoise.io.dicom_decode import read_frames
from denoise.io.errors import ScanReadError

if TYPE_CHECKING:
    from denoise.io.dicom_read import FrameRef

__all__ = ["split_duplicates", "duplicate_notes"]


def split_duplicates(frames: Sequence[FrameRef]) -> tuple[list[FrameRef], list[tuple[FrameRef, FrameRef]]]:
    """(frames to use, [(duplicate, the frame used instead)]).

    A duplicate has the SOPInstanceUID and frame number of an earlier frame; callers pass the
    frames sorted by (path, frame), so the copy first by file path is the one used. Frames
    without a SOPInstanceUID are never duplicates.
    """
    first: dict[tuple[str, int], FrameRef] = {}
    kept: list[FrameRef] = []
    dups: list[tuple[FrameRef, FrameRef]] = []
    for f in frames:
        sop = str(f.header.get("SOPInstanceUID", "") or "")
        if not sop:
            kept.append(f)
            continue
        orig = first.setdefault((sop, f.frame), f)
        if orig is f:
            kept.append(f)
        else:
            dups.append((f, orig))
    return kept, dups


def duplicate_notes(pairs: Sequence[tuple[FrameRef, FrameRef]], ordered: Sequence[FrameRef],
                    pixels: np.ndarray) -> list[str]:
    """Notes on duplicate copies whose pixel values differ from the copy used (file names only).

    ``ordered`` and ``pixels`` are the frames read into the scan and their physical values.
    """
    index = {id(f): i for i, f in enumerate(ordered)}
    pairs = [(d, o) for d, o in pairs if id(o) in index]
    if not pairs:
        return []
    try:
        values = read_frames([d for d, _ in pairs])
    except ScanReadError as exc:
        return [f"duplicate copies not compared with the copy used: {exc.reason}"]
    except ValueError:  # copies of different matrix sizes
        return ["duplicate copies not compared with the copy used: their matrix sizes differ"]
    differ: dict[str, str] = {}
    for (dup, orig), value in zip(pairs, values):
        used = pixels[index[id(orig)]]
        if value.shape != used.shape or not np.allclose(value, used, rtol=1e-6, atol=1e-6):
            differ.setdefault(dup.path.name, orig.path.name)
    if not differ:
        return []
    shown = ", ".join(f"{d} (used {o})" for d, o in list(differ.items())[:5])
    more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
    return [f"pixel values of {len(differ)} duplicate object{'s' if len(differ) > 1 else ''} differ from "
            f"the copy used (the first by file name): {shown}{more}"]
