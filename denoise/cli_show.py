"""``denoise models`` and ``denoise info``: tables with a header that fit the terminal (80 columns
when the output is not a terminal). A cell too long for its column (a long relative path, a
model's summary) never widens the table: a path goes on a line of its own above its row, a
summary is wrapped under its row."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

__all__ = ["show_models", "show_info", "table", "width"]

MIN_WIDTH = 80
_TRANSFER_SYNTAX = {  # short names for the ENCODING column
    "1.2.840.10008.1.2": "implicit LE", "1.2.840.10008.1.2.1": "explicit LE", "1.2.840.10008.1.2.2": "explicit BE",
    "1.2.840.10008.1.2.1.99": "deflated", "1.2.840.10008.1.2.5": "RLE", "1.2.840.10008.1.2.4.50": "JPEG",
    "1.2.840.10008.1.2.4.51": "JPEG", "1.2.840.10008.1.2.4.57": "JPEG lossless", "1.2.840.10008.1.2.4.70":
    "JPEG lossless", "1.2.840.10008.1.2.4.80": "JPEG-LS lossls", "1.2.840.10008.1.2.4.81": "JPEG-LS",
    "1.2.840.10008.1.2.4.90": "JPEG2000 lossls", "1.2.840.10008.1.2.4.91": "JPEG2000",
}


def width() -> int:
    """Columns to fit: the terminal's (``COLUMNS`` or the tty), never below 80."""
    return max(MIN_WIDTH, shutil.get_terminal_size((MIN_WIDTH, 24)).columns)


def table(header: list[str], rows: list[list[str]], *, right: set[int] = frozenset(), total: int | None = None) -> list[str]:
    """Lines of a table whose first column takes what the others leave of ``total`` columns (a
    longer first cell goes on a line of its own, its row below it, indented). Columns in
    ``right`` are right-aligned."""
    total = total or width()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    first = max(12, min(widths[0], total - sum(widths[1:]) - 2 * (len(header) - 1)))

    def line(cells: list[str], lead: str) -> str:
        rest = [str(c).rjust(w) if i + 1 in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells[1:], widths[1:]))]
        return "  ".join([lead.ljust(first), *rest]).rstrip()

    out = [line(header, header[0])]
    for r in rows:
        if len(r[0]) > first:
            out += [r[0], line(r, "")]
        else:
            out.append(line(r, r[0]))
    return out


def show_models() -> int:
    """The shipped models as a table, each with the first sentence of its model card under it."""
    from denoise.pretrained import PRETRAINED_DIR, list_pretrained

    models = list_pretrained()
    if not models:
        print("no shipped models found")
        return 0
    total = width()
    rows = [[m["name"], m["kind"], f"{m['dims']}D", str(m["noise"]), m["val_psnr"]] for m in models]
    lines = table(["NAME", "KIND", "DIMS", "TRAINING NOISE", "VAL PSNR"], rows, right={4}, total=total)
    print(lines[0])
    for m, row_line in zip(models, lines[1:]):
        print(row_line)
        for text in textwrap.wrap(_first_sentence(m["summary"]), total - 4):
            print("    " + text)
    print(f"Model cards (training data, intended use, limits): NAME.md in\n    {PRETRAINED_DIR}")
    return 0


def show_info(path: Path) -> int:
    """One table row per scan, then one line per file that is not a scan or could not be read;
    1 when nothing usable was found or something failed to read (like ``run``), 0 when every
    scan read. Paths are relative to PATH (no patient-named parent folders)."""
    from denoise.io import ScanReadError, discover_scans
    from denoise.manifest import relative_reason

    def one_line(reason: str) -> str:  # no newlines; paths relative to PATH (as each line starts), no others
        return " ".join(relative_reason(reason, [Path(path)]).split())

    scans, skipped = discover_scans(path)
    rows, problems, failed = [], [], 0
    for s in scans:
        try:
            d = s.load().describe()
        except Exception as exc:
            failed += 1
            why = exc.reason if isinstance(exc, ScanReadError) else f"{type(exc).__name__}: {exc}"
            problems.append(f"{s.relpath}: unreadable: {one_line(why)}")
            continue
        spacing = "x".join(f"{float(v):.3g}" for v in d["spacing"].split("x"))
        ts = d["transfer_syntax"]
        rows.append([s.relpath, d["format"], d["modality"], d["shape"], spacing, str(len(s.files)),
                     _TRANSFER_SYNTAX.get(ts, ts[:15]) if ts else "-"])
    if rows:
        print("\n".join(table(["SCAN", "FORMAT", "MOD", "SHAPE", "SPACING MM", "FILES", "ENCODING"], rows,
                              right={5})))
    for k in skipped:
        failed += k.failed
        problems.append(f"{k.relpath}: {'unreadable' if k.failed else 'skipped'}: {one_line(k.reason)}")
    if problems:
        print(("\n" if rows else "") + "\n".join(problems))
    if not scans:
        n = len(skipped)
        print(f"denoise: no DICOM or NIfTI scans found under {path} ({n} file{'s' * (n != 1)} looked at)",
              file=sys.stderr)
        return 1
    if failed:
        print(f"denoise: {failed} scan(s) or file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]
