"""``denoise anomaly``: its parser and handler (kept out of cli.py, which holds the other commands)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_anomaly"]


def add_anomaly(sub) -> None:
    from denoise.anomaly import POLARITIES, SCORES
    from denoise.anomaly_job import DEFAULT_ANOMALY_MODEL

    a = sub.add_parser("anomaly", help="anomaly maps (an autoencoder's reconstruction error) of every scan under a "
                                       "folder")
    a.add_argument("-i", "--input", required=True, type=Path,
                   help="folder (or a single file) of DICOM series and NIfTI files; never modified")
    a.add_argument("-o", "--output", required=True, type=Path,
                   help="output folder mirroring the input tree: each scan's anomaly map (DICOM: a derived series "
                        "numbered source + 4000), manifest.csv and summary.json")
    a.add_argument("-m", "--model", help="learned model whose reconstruction error is the map: a shipped name "
                   "(bottleneck autoencoders: vae-mr-2d, sparse-mr-2d, cae-mr-2d), a checkpoint or an exported "
                   f"folder (default: {DEFAULT_ANOMALY_MODEL}; none with --score zscore)")
    a.add_argument("--score", default="residual", choices=list(SCORES),
                   help="residual: |input - reconstruction| in the scan's units; kl: a VAE's KL divergence per "
                        "latent location (nats); zscore: no model, (x - mean) / std of the scan's foreground, the "
                        "baseline (default: %(default)s)")
    a.add_argument("--polarity", default="both", choices=list(POLARITIES),
                   help="both: any difference; bright: only brighter than expected (FLAIR/T2 lesions, "
                        "enhancement); dark: only darker (default: %(default)s)")
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the model runs: auto = cuda, then mps, then cpu (default: %(default)s)")
    a.add_argument("--continue", dest="resume", action="store_true",
                   help="skip scans OUT/manifest.csv records as done with the same input, model, score and "
                        "polarity (default: off)")
    a.add_argument("--format", dest="fmt", default="same", choices=["same", "nifti"],
                   help="same: DICOM -> derived DICOM series, NIfTI -> NIfTI; nifti: every map as NIfTI "
                        "(default: %(default)s)")
    a.add_argument("--batch-size", type=int, default=None,
                   help="slices per forward pass (default: 2 on CPU, 8 on GPU)")
    a.add_argument("--workers", type=int, metavar="N",
                   help="N scans in parallel on a local Dask cluster (default: one at a time)")
    a.add_argument("--quiet", action="store_true", help="no progress bars or info messages")
    a.set_defaults(handler=_anomaly)


def _anomaly(args) -> int:
    from denoise.anomaly_job import anomaly_folder

    s = anomaly_folder(args.input, args.output, model=args.model, score=args.score, polarity=args.polarity,
                       device=args.device, resume=args.resume, fmt=args.fmt, batch_size=args.batch_size,
                       workers=args.workers, progress=not args.quiet)
    print(f"{s['ok']} anomaly map(s), {s['failed']} failed, {s['skipped']} skipped -> {Path(args.output) / s['manifest']}"
          " (research use only)", file=sys.stdout)
    return 1 if s["failed"] else 0
