"""Which reference scan a scan is scored against (`denoise evaluate`, `denoise run --reference`).

A scan pairs with the reference at the same relative path, where a DICOM series this package
wrote, alone in its folder, stands for that folder (`denoise.io.ScanSource.derived_folder`): `run`
and `simulate` write a series ``a/S5_x`` into ``OUT/a/S5_x/`` and the outputs made from that into
``OUT2/a/S5_x/`` again, so a simulate -> run -> evaluate chain lines up with the clean tree
(this also pairs the nested outputs of older versions, ``OUT/a/S5_x/S1005_y``). A NIfTI file
written from a DICOM series (``run --format nifti``: ``SERIES.nii.gz``) pairs with that series.
Where the trees do not line up (another input root, renamed folders), a derived DICOM series pairs
by UID: with the reference series holding the images its Source Image Sequence names, else with
the nearest series its Related Series Sequence names (its source series and, for a chain, the
series that one was made from: `denoise.io.dicom_write`).

Only headers are read (no pixels); reasons name relative paths only.
"""

from __future__ import annotations

from collections import defaultdict

from denoise.io import ScanSource
from denoise.io.dicom_conform import derived_uid, valid_uid
from denoise.io.dicom_write import source_sop

__all__ = ["ReferenceIndex", "is_noise_map"]

_NIFTI = (".nii.gz", ".nii")


class ReferenceIndex:
    """The scans of a reference tree, by relative path and by UID; `find` pairs a scan with one."""

    def __init__(self, refs: list[ScanSource]) -> None:
        self.by_path = {r.relpath: r for r in refs}
        homes: dict[str, list[ScanSource]] = defaultdict(list)
        for r in refs:
            if r.derived_folder:
                homes[r.derived_folder].append(r)
        for home, rs in homes.items():
            self.by_path.setdefault(home, rs[0])
        self.by_sop: dict[str, ScanSource] = {}
        self.by_series: dict[str, list[ScanSource]] = defaultdict(list)
        for r in refs:
            if r.stack is None:
                continue
            for f in r.stack.frames:
                self.by_sop.setdefault(source_sop(f.header)[1] or "", r)
            uid = str(r.stack.frames[0].header.get("SeriesInstanceUID", "") or "")
            for key in {uid, uid if valid_uid(uid) else derived_uid(uid)} - {""}:
                self.by_series[key].append(r)
        self.by_sop.pop("", None)

    def __len__(self) -> int:
        return len(self.by_path)

    def find(self, source: ScanSource) -> tuple[ScanSource | None, str]:
        """(the reference of ``source``, how it was found: "path" or "uid"), or (None, why not)."""
        for key in _path_keys(source):
            if key in self.by_path:
                return self.by_path[key], "path"
        if source.kind == "dicom" and source.stack is not None:
            ref, why = self._by_uid(source)
            if ref is not None or why:
                return ref, why or "uid"
        what = "no reference at the same relative path"
        if source.kind == "dicom":
            what += ", nor a reference series it derives from (Source Image / Related Series Sequence)"
        return None, what

    def _by_uid(self, source: ScanSource) -> tuple[ScanSource | None, str]:
        headers = [f.header for f in source.stack.frames]  # type: ignore[union-attr]
        sops = {str(it.get("ReferencedSOPInstanceUID", "") or "") for h in headers
                for it in h.get("SourceImageSequence", None) or []}
        hits = {r.relpath: r for u in sops if (r := self.by_sop.get(u)) is not None}
        if len(hits) == 1:
            return next(iter(hits.values())), ""
        related = [str(it.get("SeriesInstanceUID", "") or "") for it in headers[0].get("RelatedSeriesSequence", None) or []]
        for uid in reversed(related):  # the nearest first: the source series is the last item
            candidates = self.by_series.get(uid, [])
            if len(candidates) > 1:  # one series split into stacks (echoes, magnitude/phase): the same size
                candidates = [c for c in candidates if len(c.stack.frames) == len(headers)]  # type: ignore[union-attr]
            if len(candidates) == 1:
                return candidates[0], ""
            if candidates:
                names = ", ".join(c.relpath for c in candidates[:3])
                return None, f"no reference at the same relative path; by UID it derives from one of {names}"
        return None, ""


def _path_keys(source: ScanSource) -> list[str]:
    keys = [source.relpath]
    if source.derived_folder:
        keys.append(source.derived_folder)
    for ext in _NIFTI:  # run --format nifti wrote a DICOM series as SERIES.nii.gz
        if source.relpath.endswith(ext):
            keys.append(source.relpath[: -len(ext)])
            break
    return keys


def is_noise_map(source: ScanSource, homes: set[str]) -> bool:
    """Whether ``source`` is a noise map (``run --noise-map``: NAME_noise beside NAME) rather than a
    denoised scan: a NIfTI ``*_noise.nii(.gz)``, or a series in ``X_noise`` where X is among
    ``homes`` (the scans' `ScanSource.derived_folder`, else relpath)."""
    if source.relpath.endswith(tuple("_noise" + ext for ext in _NIFTI)):
        return True
    home = source.derived_folder or source.relpath
    return home.endswith("_noise") and home[: -len("_noise")] in homes
