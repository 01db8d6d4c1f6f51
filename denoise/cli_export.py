"""``denoise export``: its parser and handler (kept out of cli.py, which holds the other commands)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_export"]


def add_export(sub) -> None:
    e = sub.add_parser("export", help="write a model as ONNX (or TorchScript) plus a JSON of its pre/post-processing")
    e.add_argument("-m", "--model", required=True, metavar="NAME|CKPT",
                   help="a shipped model (denoise models) or a checkpoint file (.pt)")
    e.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                   help="folder to write (network file, denoise-export.json, MODEL_CARD.md); run it with run -m DIR")
    e.add_argument("--format", dest="fmt", default="onnx", choices=["onnx", "torchscript"],
                   help="onnx (runs in onnxruntime, and in `denoise run -m DIR`) or torchscript (for libtorch; "
                        "not loaded by this toolkit, since TorchScript archives carry code) (default: %(default)s)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR (default: refuse)")
    e.set_defaults(handler=_export)


def _export(args) -> int:
    from denoise.export import export_model

    path = export_model(args.model, args.output, fmt=args.fmt, overwrite=args.overwrite)
    print(f"exported {args.model} ({args.fmt}) -> {path.parent} (spec: {path.name})")
    return 0
