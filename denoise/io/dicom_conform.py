"""Making a derived DICOM header valid whatever the source got wrong (checked with dciodvfy).

A derived series copies the source's patient, study and acquisition attributes, and with them the
source's defects: anonymisers leave empty or hash-like UIDs, exports omit Type 2 attributes, some
vendors write conditional attributes whose condition does not hold, and a classic image made from
an enhanced multi-frame object lacks the classic MR attributes (Scanning Sequence, ...). A PACS
may refuse such objects. `conform_derived` repairs what it can without inventing clinical facts:

- **UIDs**: every UI value that is not a valid UID (digits and dots, no leading zeros, at most 64
  characters, root 1 or 2) is replaced by a derived ``2.25.`` UID computed from the old value, so
  the same source UID maps to the same new one in every file and series (references stay linked).
- **Type 2 attributes** the modules require are added empty when absent (empty = unknown).
- **Conditional attributes** follow their conditions: Laterality is present (empty where not known)
  unless the body part is one of the unpaired ones, for which it is removed; Inversion Time
  only with IR, Trigger Time only with cardiac or pulse gating (CG/PPG in Scan Options).
- **Invalid values** of optional attributes are removed, not guessed: an empty Specific Character
  Set (the default repertoire), a window width below 1 or a centre without its width, an unknown
  Pregnancy Status, a Velocity Encoding Direction that is not a unit vector, references (sequence
  items) whose UIDs were emptied.
- **MR attributes** a classic MR image needs: Scanning Sequence and Sequence Variant from the
  enhanced object's pulse-sequence attributes (``RM``/``NONE``, research mode and none, when there
  are none), Echo Time from the Effective Echo Time, Image Type value 3 (``OTHER`` if missing; CT:
  ``AXIAL``).

All functions work on pydicom datasets in memory; no file I/O.
"""

from __future__ import annotations

import re
import uuid

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["conform_derived", "valid_uid", "derived_uid"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "denoise:derived-uid")
_UID = re.compile(r"^[12](\.(0|[1-9][0-9]*))+$")
_TYPE2_COMMON = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer")
_TYPE2_MR = ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength")
_TYPE2_CT = ("KVP", "AcquisitionNumber")
# body parts (0018,0015 defined terms) that are not paired: Laterality must be absent for them, and
# is required (empty if unknown) for every other value, vendor free text included (dciodvfy's rule)
_UNPAIRED = {"ABDOMEN", "ABDOMENPELVIS", "AORTA", "BRAIN", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "CSPINE",
             "TSPINE", "LSPINE", "SSPINE", "COCCYX", "SPINE", "CTSPINE", "TLSPINE", "LSSPINE", "HEAD", "HEADNECK",
             "HEART", "NECK", "PELVIS", "SKULL", "WHOLEBODY", "JAW", "MAXILLA", "ILIUM", "PROSTATE", "BLADDER",
             "LIVER", "PANCREAS", "SPLEEN", "UTERUS", "STOMACH", "COLON", "RECTUM", "ESOPHAGUS", "THYROID", "NOSE",
             "LARYNX", "PHARYNX", "TRACHEA", "MEDIASTINUM", "FACE", "STERNUM", "CERVIX", "DUODENUM", "GALLBLADDER"}


def valid_uid(value: str) -> bool:
    """A UID a validator accepts: components of digits without leading zeros, root 1 or 2, <= 64 chars."""
    return 0 < len(value) <= 64 and bool(_UID.match(value)) and not value.startswith("2.999.")  # 2.999: examples


def derived_uid(value: str) -> str:
    """A valid UID standing in for the invalid ``value``; the same value gives the same UID (a
    name-based UUID, version 5, as a ``2.25`` UID: PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, value).int}"


def conform_derived(ds: Dataset) -> list[str]:
    """Repair ``ds`` (a derived image's data set, file meta excluded) in place; see the module
    docstring. Never raises for odd source values: a repair that fails is skipped and named in
    the returned list (empty when all ran)."""
    failed = []
    for step in (_repair_uids, _basics, _laterality, _window, _optional_values, _mr, _ct):
        try:
            step(ds)
        except Exception as exc:  # an odd value in one attribute must not fail the scan
            failed.append(f"{step.__name__.strip('_')}: {type(exc).__name__}: {exc}")
    return failed


def _basics(ds: Dataset) -> None:
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet
    modality = str(ds.get("Modality", "") or "")
    for kw in _TYPE2_COMMON + (_TYPE2_MR if modality == "MR" else _TYPE2_CT if modality == "CT" else ()):
        if kw not in ds:
            setattr(ds, kw, None)
    if "FrameOfReferenceUID" in ds and "PositionReferenceIndicator" not in ds:
        ds.PositionReferenceIndicator = None
    if modality in ("CT", "MR"):
        for kw in ("PatientPosition", "SliceThickness"):
            if kw not in ds:
                setattr(ds, kw, None)


def _optional_values(ds: Dataset) -> None:
    if "PregnancyStatus" in ds and ds.PregnancyStatus not in (1, 2, 3, 4):
        del ds.PregnancyStatus
    if "VelocityEncodingDirection" in ds:
        try:
            values = [float(v) for v in _values(ds, "VelocityEncodingDirection")]
            unit = len(values) == 3 and abs(sum(v * v for v in values) - 1.0) < 1e-3
        except ValueError:
            unit = False
        if not unit:
            del ds.VelocityEncodingDirection


def _repair_uids(ds: Dataset) -> None:
    for elem in list(ds):
        if elem.VR == "SQ":
            # a reference whose UIDs an anonymiser emptied points nowhere: drop the item (and an
            # emptied sequence)
            kept = [item for item in elem.value
                    if all(item.get(kw, None) not in ("", None) for kw in ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID")
                           if kw in item)]
            if len(kept) != len(elem.value):
                if not kept:
                    del ds[elem.tag]
                    continue
                elem.value = kept
            for item in elem.value:
                _repair_uids(item)
        elif elem.VR == "UI" and elem.value:
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            fixed = [v if valid_uid(str(v)) else derived_uid(str(v)) for v in values]
            if fixed != [str(v) for v in values]:
                elem.value = fixed if elem.VM > 1 else fixed[0]


def _laterality(ds: Dataset) -> None:
    part = str(ds.get("BodyPartExamined", "") or "")
    if part and part != part.upper():
        ds.BodyPartExamined = part.upper()  # CS: upper case
    if part.upper() in _UNPAIRED:
        if "Laterality" in ds:
            del ds.Laterality
    elif "Laterality" not in ds and "ImageLaterality" not in ds:
        ds.Laterality = None  # paired or unknown: present, empty where not known


def _window(ds: Dataset) -> None:
    if "WindowWidth" not in ds and "WindowCenter" not in ds:
        return
    values = _values(ds, "WindowWidth")
    try:
        bad = not values or any(float(w) < 1 for w in values) or len(_values(ds, "WindowCenter")) != len(values)
    except (TypeError, ValueError):
        bad = True
    if bad:
        for kw in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"):
            if kw in ds:
                delattr(ds, kw)


def _ct(ds: Dataset) -> None:
    if str(ds.get("Modality", "") or "") != "CT":
        return
    image_type = [str(v) for v in ds.get("ImageType", [])]
    if len(image_type) < 3 or not image_type[2]:  # value 3 is required for CT: AXIAL or LOCALIZER
        ds.ImageType = [*(image_type + ["DERIVED", "SECONDARY"][len(image_type):])[:2], "AXIAL", *image_type[3:]]


def _mr(ds: Dataset) -> None:
    if str(ds.get("Modality", "") or "") != "MR":
        return
    if not ds.get("ScanningSequence"):
        ds.ScanningSequence = _scanning_sequence(ds)
    if not ds.get("SequenceVariant"):
        ds.SequenceVariant = _sequence_variant(ds)
    if ds.get("EchoTime") in (None, "") and ds.get("EffectiveEchoTime") not in (None, ""):
        ds.EchoTime = f"{float(ds.EffectiveEchoTime):.6g}"
    image_type = [str(v) for v in ds.get("ImageType", [])]
    if len(image_type) < 3 or not image_type[2]:
        ds.ImageType = [*(image_type + ["DERIVED", "SECONDARY"][len(image_type):])[:2], "OTHER", *image_type[3:]]
    sequence, variant = _values(ds, "ScanningSequence"), _values(ds, "SequenceVariant")
    if "IR" in sequence:
        if "InversionTime" not in ds:
            ds.InversionTime = None
    elif "InversionTime" in ds:
        del ds.InversionTime
    if "TriggerTime" in ds and not {"CG", "PPG"} & set(_values(ds, "ScanOptions")):
        del ds.TriggerTime
    if "RepetitionTime" not in ds and not ("EP" in sequence and "SK" in variant):
        ds.RepetitionTime = None


def _values(ds: Dataset, keyword: str) -> list[str]:
    """An attribute's values as strings (none when absent or empty)."""
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return []
    return [str(v) for v in elem] if isinstance(elem, (list, tuple, MultiValue)) else [str(elem)]


def _scanning_sequence(ds: Dataset) -> list[str]:
    """Classic Scanning Sequence from an enhanced object's pulse-sequence attributes."""
    echo = str(ds.get("EchoPulseSequence", "") or "")
    seq = {"SPIN": ["SE"], "GRADIENT": ["GR"], "BOTH": ["SE", "GR"]}.get(echo, [])
    if str(ds.get("InversionRecovery", "") or "") == "YES":
        seq.append("IR")
    if str(ds.get("EchoPlanarPulseSequence", "") or "") == "YES":
        seq.append("EP")
    return seq or ["RM"]


def _sequence_variant(ds: Dataset) -> list[str]:
    """Classic Sequence Variant from an enhanced object's attributes."""
    variant = []
    if str(ds.get("Spoiling", "NONE") or "NONE") != "NONE":
        variant.append("SP")
    if str(ds.get("SteadyStatePulseSequence", "NONE") or "NONE") != "NONE":
        variant.append("SS")
    if str(ds.get("MagnetizationTransfer", "NONE") or "NONE") != "NONE":
        variant.append("MTC")
    return variant or ["NONE"]
