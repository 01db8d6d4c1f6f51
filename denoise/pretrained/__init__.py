"""Shipped pretrained models: ``<name>.pt`` checkpoints with a ``<name>.md`` model card each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["list_pretrained", "PRETRAINED_DIR"]

PRETRAINED_DIR = Path(__file__).parent  # the one definition (infer, methods and the CLI import it)


def list_pretrained() -> list[dict[str, Any]]:
    """Key facts of each shipped model, read from its checkpoint config and model card."""
    # imported here, so that PRETRAINED_DIR costs no torch import (the CLI's name checks)
    from denoise.checkpoint import read_info

    out = []
    for pt in sorted(PRETRAINED_DIR.glob("*.pt")):
        info = read_info(pt)
        val = info.get("validation", {})
        card = pt.with_suffix(".md")
        summary = ""
        if card.exists():
            lines = [ln.strip() for ln in card.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            summary = lines[0] if lines else ""
        out.append({
            "name": pt.stem,
            "kind": info["model"]["kind"],
            "modality": "CT" if info.get("normalization", {}).get("kind") == "window" else "MR",
            "dims": info["model"]["spatial_dims"],
            "noise": info.get("noise", ""),
            "val_psnr": f"{val['val_psnr']:.2f} dB" if "val_psnr" in val else "n/a",
            "card": str(card) if card.exists() else "",
            "summary": summary,
        })
    return out
