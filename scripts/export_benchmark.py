"""Exported models measured (issue #26 section 1): ONNX/onnxruntime against torch.

    python scripts/export_benchmark.py [--out docs/benchmarks/export] [--models mr-2d,ct-2d,mr-3d]

Writes OUT/agreement.csv (maximum |ONNX - torch| on the sample scans over the intensity scale,
`denoise.bench_export.export_agreement`) and OUT/speed.csv (ms per 256 x 256 slice, whole call and
network alone, `export_speed`). About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from denoise.bench_export import export_agreement, export_speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/export"))
    ap.add_argument("--models", default="mr-2d,ct-2d,mr-3d,vae-mr-2d,sparse-mr-2d")
    ap.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[1] / "sample_data")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    agree = pd.DataFrame(export_agreement(models, args.samples))
    agree.to_csv(args.out / "agreement.csv", index=False)
    print(agree.to_string(index=False))
    speed = pd.DataFrame(export_speed(models))
    speed.round(2).to_csv(args.out / "speed.csv", index=False)
    print(speed.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
