"""Command line: ``denoise <command>``. Each handler calls one library function.

Exit codes: 0 success, 1 some inputs failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from denoise.noise_level import NOISE_LEVELS
from denoise.registry import MODEL_KINDS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``denoise`` console script; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(message)s")
    from denoise.batch import UsageError
    from denoise.io import ScanReadError

    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # `denoise models | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail again
        return 1
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM in `run`): outputs are whole or temporaries, the lock is released
        print("denoise: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"denoise: error: {exc}", file=sys.stderr)
        return 2
    except (ScanReadError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"denoise: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ScanReadError) else 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="denoise", description="Denoise CT and MR scans with convolutional autoencoders "
                                "(research use only, not for diagnosis).")
    from denoise._version import __version__

    p.add_argument("--version", action="version", version=f"denoise {__version__}")
    from denoise.cli_anomaly import add_anomaly
    from denoise.cli_export import add_export

    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_simulate, _add_evaluate, _add_train, _add_adapt, _add_bench, add_export, add_anomaly, _add_others):
        add(sub)
    return p


_DEVICE_HELP = "auto = cuda, then mps, then cpu (default: %(default)s)"
_QUIET_HELP = "no progress bars or info messages (warnings and errors only)"


def _pct(text: str) -> str:
    """``text`` for an argparse help string (which %-formats it)."""
    return text.replace("%", "%%")


def _add_run(sub) -> None:
    from denoise.methods import valid_names

    r = sub.add_parser("run", help="denoise every DICOM series and NIfTI file under a folder")
    r.add_argument("-i", "--input", required=True, type=Path,
                   help="folder (or a single file) of DICOM series and NIfTI files; never modified")
    r.add_argument("-o", "--output", required=True, type=Path,
                   help="output folder mirroring the input tree, with manifest.csv and summary.json; it may not be "
                        "the input, lie inside it or hold it")
    r.add_argument("-m", "--model", help=f"the method: {_pct(valid_names())} (the names `denoise bench --methods` "
                   "takes) (default: by modality: ct-2d for CT, mr-2d for MR and the rest)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where learned models run: " + _DEVICE_HELP + "; classical methods run on the CPU")
    r.add_argument("--continue", dest="resume", action="store_true",
                   help="skip scans OUT/manifest.csv records as done with the same input hash, model and options "
                        "(default: off, every scan is redone)")
    r.add_argument("--reference", type=Path, help="folder of clean scans at the same relative paths: adds PSNR/SSIM "
                   "columns to the manifest (default: none)")
    r.add_argument("--format", dest="fmt", default="same", choices=["same", "nifti"],
                   help="same: DICOM -> derived DICOM series, NIfTI -> NIfTI; nifti: every output as NIfTI "
                        "(a DICOM series as SERIES.nii.gz) (default: %(default)s)")
    r.add_argument("--tile", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="3D learned models: sliding-window tile in voxels (slices, rows, columns), halved on "
                        "out-of-memory (default: the model's: 96 96 96; slab models such as mr-3d 32 320 320)")
    r.add_argument("--overlap", type=float, default=0.25,
                   help="3D learned models: overlap of neighbouring tiles as a fraction of the tile, 0-1, blended "
                        "with Gaussian weights (default: %(default)s)")
    r.add_argument("--batch-size", type=int, default=None,
                   help="learned models: slices or 3D tiles per forward pass (default: 2 on CPU, 8 on GPU)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, metavar="N", help="denoise N scans in parallel on a local Dask cluster "
                   "(the dist extra) (default: one scan at a time, in this process)")
    g.add_argument("--scheduler", metavar="ADDR",
                   help="address of an existing Dask scheduler, tcp://HOST:PORT (default: none, see --workers)")
    r.add_argument("--num-parts", type=int, default=1, metavar="N",
                   help="split the scans into N parts for N jobs writing into the same OUT, each with its own "
                        "manifest.partK.csv (default: %(default)s, a single job)")
    r.add_argument("--part-id", type=int, default=0, metavar="K",
                   help="the part this job runs, 0 to N-1: every N-th scan in path order, from the K-th "
                        "(default: %(default)s)")
    r.add_argument("--noise-map", action="store_true",
                   help="also write the removed noise (input - output) beside each output as NAME_noise "
                        "(default: off)")
    r.add_argument("--uncertainty", action="store_true",
                   help="learned models: also write a per-voxel uncertainty map beside each output as NAME_uncertainty "
                        "(the spread of the outputs over the 4 in-plane flips, in the scan's units; 4x slower) "
                        "(default: off)")
    r.add_argument("--tta", action="store_true",
                   help="learned models: average over the 4 in-plane flips (4x slower, slightly better; removes the "
                        "faint 2-pixel pattern) (default: off)")
    r.add_argument("--planes", type=int, choices=[1, 3], default=None,
                   help="learned 2D models: 3 = on near-isotropic volumes also along the other two axes, averaged "
                        "(3x slower); 1 = never (mr-3d: its slab network everywhere). Default: the model's own "
                        "choice (mr-3d takes near-isotropic volumes along three planes with mr-2d)")
    r.add_argument("--strength", type=float, default=1.0,
                   help="0-1: blend the output with the input (0 = unchanged, 1 = full denoising); lower keeps "
                        "more texture and faint structure (default: %(default)s)")
    r.add_argument("--noise-level", choices=NOISE_LEVELS, default="auto",
                   help="learned models with a noise-level channel (mr-2d, mr-3d): tell the network a map of the noise "
                        "level over each slice (map) or one value per slice (constant); auto = a map where the scan's "
                        "noise visibly varies across the image (parallel imaging, surface coils; the manifest's "
                        "noise_spread column) (default: %(default)s)")
    r.add_argument("--noise-scale", type=float, default=None, metavar="F",
                   help="learned models with a noise-level channel: tell the network F x the noise level it estimates "
                        "in tissue (default: the model's own: mr-2d 0.9, mr-3d's three planes 0.85, which keep small "
                        "faint lesions; lower keeps more faint structure, above 1 smooths more)")
    r.add_argument("--full-strength", action="store_true",
                   help="4D series (fMRI time points, averages saved separately): keep the asked --strength instead "
                        "of letting the series' own still repeats lower it to what they measure as best (the "
                        "manifest's repeat_strength column) (default: off)")
    r.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    r.set_defaults(handler=_run)


def _add_simulate(sub) -> None:
    s = sub.add_parser("simulate", help="write noisy copies of every scan (same formats, mirrored tree)")
    s.add_argument("-i", "--input", required=True, type=Path,
                   help="folder (or a single file) of clean scans; never modified")
    s.add_argument("-o", "--output", required=True, type=Path,
                   help="output folder: a noisy copy of each scan at the same relative path, in the same format")
    s.add_argument("--noise", required=True, metavar="SPEC",
                   help="kind:level, e.g. rician:0.05 (sigma = 5%% of the robust maximum) or lowdose:0.25 (25%% of "
                        "full dose, CT); every form under 'Noise specs' in README.md")
    s.add_argument("--seed", type=int, default=0, help="random seed: scan k (in sorted path order) gets SEED+k, so a "
                   "rerun writes the same noise (default: %(default)s)")
    s.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    s.set_defaults(handler=_simulate)


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="PSNR/SSIM of denoised scans against references (paired by path)")
    e.add_argument("--denoised", required=True, type=Path, metavar="DIR", help="folder of denoised scans (a run's OUT)")
    e.add_argument("--reference", required=True, type=Path, metavar="DIR",
                   help="folder of clean scans at the same relative paths (a derived DICOM series pairs with the "
                        "source series it was written for)")
    e.add_argument("--mask", default="auto", choices=["auto", "none"],
                   help="auto: score inside the reference's foreground mask; none: the whole image "
                        "(default: %(default)s)")
    e.add_argument("--out", type=Path, metavar="DIR|FILE.csv",
                   help="a folder (the table is written as DIR/evaluation.csv; created if missing) or a .csv file "
                        "path (default: DENOISED/evaluation.csv)")
    e.set_defaults(handler=_evaluate)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a model on a folder of clean scans")
    t.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="folder of clean scans to train on (one modality: see --modality)")
    t.add_argument("--model", choices=list(MODEL_KINDS),
                   help="model family (default: the --init model's, else the --config file's, else dae)")
    t.add_argument("--dims", type=int, choices=[2, 3], help="spatial dims: 2 = slices, 3 = volumes (default: the "
                   "--init model's, else the --config file's, else 2)")
    t.add_argument("--noise", metavar="SPEC", help="noise added on the fly, as in `simulate --noise`; a range such as "
                   "rician:0.01-0.09 draws a level per patch (default: the --config file's, else the --init model's, "
                   "else rician:0.01-0.09 for MR, lowdose:0.1-0.5 for CT)")
    t.add_argument("--init", metavar="NAME|PATH",
                   help="fine-tune a shipped model or checkpoint on these scans (its architecture, intensity "
                        "scaling and patch size; learning rate 1e-4 unless set) (default: none, train from scratch)")
    t.add_argument("--lr", type=float, help="learning rate (default: the --config file's, else 1e-3; 1e-4 with --init)")
    t.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder: best.pt (best validation PSNR) and last.pt (to --resume from)")
    t.add_argument("--config", type=Path, metavar="YAML", help="YAML with model: and train: sections, fields of "
                   "denoise.config.ModelConfig / TrainConfig (default: none, their defaults)")
    t.add_argument("--epochs", type=int, metavar="N", help="epochs, each followed by validation and a checkpoint "
                   "(default: the --config file's, else 20)")
    t.add_argument("--steps-per-epoch", type=int, metavar="N",
                   help="optimiser steps (batches of patches) per epoch (default: the --config file's, else 100)")
    t.add_argument("--modality", choices=["CT", "MR"], help="intensity scaling and default noise; a folder holding "
                   "both needs it, and the other scans are left out (default: from the scans)")
    t.add_argument("--resume", type=Path, metavar="CKPT",
                   help="last.pt to continue from: weights, optimiser, epoch, history (default: start afresh)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help=_DEVICE_HELP)
    t.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    t.set_defaults(handler=_train)


def _add_adapt(sub) -> None:
    a = sub.add_parser("adapt", help="teach a model your scanner from noisy scans alone (self-supervised fine-tuning)")
    a.add_argument("-i", "--input", required=True, type=Path, metavar="NOISY_DIR",
                   help="folder of noisy DICOM series / NIfTI files (read, never modified)")
    a.add_argument("-o", "--output", required=True, type=Path, metavar="CKPT",
                   help="checkpoint to write (.pt; a model card .md is written beside it); use it with run -m CKPT")
    a.add_argument("--init", metavar="NAME|PATH", help="shipped model or checkpoint to start from (a dae) "
                   "(default: ct-2d for CT scans, mr-2d otherwise)")
    a.add_argument("--method", default="auto", choices=["auto", "n2n", "r2r", "blindspot", "sure"],
                   help="n2n: Noise2Noise on repeated acquisitions (4D series); sure: single scans, only one gain per "
                        "network channel learns, by Stein's unbiased risk estimate (needs the noise level: from an MR "
                        "scan's air background, else estimated, or --noise-sigma); r2r: recorrupted pairs from single "
                        "scans; blindspot: masked self-supervision on single scans; r2r and blindspot measured worse "
                        "than the shipped models (docs/design.md); auto: n2n, and a folder without repeats is refused "
                        "(default: %(default)s)")
    a.add_argument("--radius", type=int, choices=[0, 1, 2], help="blind-spot mask radius in pixels; noise correlated "
                   "between neighbours needs 1 or 2 (default: from the noise's measured correlation)")
    a.add_argument("--minutes", type=float, metavar="M", help="wall-clock training budget (default: 1 minute + 1 per "
                   "million voxels, 2 to 8)")
    a.add_argument("--patience", type=int, default=6, metavar="N", help="stop after N validations (every 40 steps) "
                   "without a lower validation loss; a large N uses the whole --minutes (default: %(default)s)")
    a.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share held back for the validation loss: by scan, or the last slices of one scan (default: %(default)s)")
    a.add_argument("--lr", type=float, help="learning rate (default: 3e-4; 1e-3 for --method sure)")
    a.add_argument("--noise-sigma", type=float, metavar="S", help="r2r, sure: the noise std in the scans' own units, "
                   "measured by you (a uniform region's std, or a repeat difference's std / 1.414) (default: estimated "
                   "from the scans; r2r's estimate reads EPI noise 1.6-1.8x too high)")
    a.add_argument("--noise-corr", type=float, metavar="R", help="r2r, sure: the noise's lag-1 correlation between "
                   "neighbouring pixels, 0 = white to 0.7 (default: r2r from the background or repeats, else 0; sure 0)")
    a.add_argument("--seed", type=int, default=0, help="seed of patches and masks (default: %(default)s)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing CKPT (default: refuse)")
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help=_DEVICE_HELP)
    a.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    a.set_defaults(handler=_adapt)


def _add_bench(sub) -> None:
    from denoise.methods import valid_names

    b = sub.add_parser("bench", help="compare methods on clean scans with synthetic noise, or on real repeats (--real)")
    b.add_argument("--data", type=Path, metavar="DIR",
                   help="folder of clean scans: each method is scored on noisy copies against them (synthetic-noise "
                        "bench; required: this or --real)")
    b.add_argument("--real", type=Path, metavar="DIR",
                   help="folder of scans with repeated acquisitions (4D): each repeat scored against the others "
                        "(real-noise bench; required: this or --data)")
    b.add_argument("--max-repeats", type=int, default=None, metavar="N",
                   help="--real: score at most N repeats per scan; all still form the references (default: all)")
    b.add_argument("--noise", metavar="SPEC[,SPEC...]",
                   help="--data: noise specs as in `simulate --noise`, e.g. rician:0.05,rician:0.09 (required with "
                        "--data; lowdose is scored on CT scans only, the other kinds on the rest)")
    b.add_argument("--methods", metavar="M[,M...]",
                   help="comma list of the names `run -m` takes and the bench's own: "
                        f"{_pct(valid_names(bench=True))}; rows name models as dae:mr-2d; checked before anything "
                        "runs. E.g. noisy,nlm:oracle,mr-2d (default with --data: noisy; gaussian, nlm, tv "
                        "and wavelet, each blind and :oracle; every shipped model, DAEs also :oracle. With --real: "
                        "noisy,nlm,dae:mr-2d,dae:mr-2d:tta,dae:mr-3d). bm3d, bm3d:oracle and bm4d:oracle run only "
                        "when named here: about 2 s per 256x256 slice, tens of minutes per volume (--max-slices "
                        "bounds them)")
    b.add_argument("--mask", default="auto", choices=["auto", "none"],
                   help="--data: auto scores the *_fg columns inside the clean scan's foreground mask, none over the "
                        "whole image (whole-image columns are always written) (default: %(default)s)")
    b.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder (created if missing): results.csv, results.md and, with --data, PNG plots")
    b.add_argument("--seed", type=int, default=0, help="--data: base random seed; each scan x noise draws its own "
                   "from it, so a rerun adds the same noise (default: %(default)s)")
    b.add_argument("--max-slices", type=int, default=None, metavar="N",
                   help="--data: score a centred slab of at most N slices of each volume (default: every slice)")
    b.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    b.set_defaults(handler=_bench)


def _add_others(sub) -> None:
    m = sub.add_parser("models", help="list the shipped pretrained models")
    m.set_defaults(handler=_models)

    n = sub.add_parser("info", help="what a file or folder holds (no patient names)")
    n.add_argument("path", type=Path, help="a scan file or a folder to look through")
    n.set_defaults(handler=_info)

    v = sub.add_parser("view", help="start the Streamlit viewer")
    v.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help="folder of scans the viewer offers besides its samples and uploads (default: none)")
    v.add_argument("--port", type=int, default=8501, help="TCP port to serve on (default: %(default)s)")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for every interface (default: %(default)s, this machine only)")
    v.set_defaults(handler=_view)


def _run(args) -> int:
    import signal

    from denoise.batch import denoise_folder

    # SIGTERM (kill, a cluster's job scheduler) unwinds like Ctrl-C: the lock on OUT is released
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # noqa: B023

    s = denoise_folder(args.input, args.output, model=args.model, device=args.device, resume=args.resume,
                       reference=args.reference, fmt=args.fmt, tile=tuple(args.tile) if args.tile else None,
                       overlap=args.overlap, batch_size=args.batch_size, noise_map=args.noise_map, uncertainty=args.uncertainty, tta=args.tta,
                       planes=args.planes, strength=args.strength, noise_level=args.noise_level, noise_scale=args.noise_scale,
                       calibrate=not args.full_strength, workers=args.workers, scheduler=args.scheduler, num_parts=args.num_parts,
                       part_id=args.part_id, progress=not args.quiet)
    reused = f" ({s['reused']} reused from the earlier run, {s['processed']} run now)" if args.resume else ""
    print(f"{s['ok']} ok{reused}, {s['failed']} failed, {s['skipped']} skipped -> {Path(args.output) / s['manifest']}")
    return 1 if s["failed"] else 0


def _simulate(args) -> int:
    from denoise.simulate_job import simulate_folder

    s = simulate_folder(args.input, args.output, args.noise, seed=args.seed, progress=not args.quiet)
    print(f"{s['ok']} noisy copies written, {s['failed']} failed -> {args.output}")
    return 1 if s["failed"] else 0


def _evaluate(args) -> int:
    from denoise.evaluate_job import evaluate_folder

    rows, path = evaluate_folder(args.denoised, args.reference, mask=args.mask, out=args.out)
    for r in rows:
        print(f"{r['scan']}\tpsnr={r['psnr']}\tssim={r['ssim']}\tdata_range={r['data_range']}\t{r['reason']}")
    print(f"-> {path}")
    unscored = sum(bool(r["reason"]) for r in rows)
    if unscored or not rows:
        print(f"denoise evaluate: {unscored} of {len(rows)} scan(s) not scored (no reference found, or unreadable: "
              "see the reason column)" if rows else f"denoise evaluate: no scans found under {args.denoised}",
              file=sys.stderr)
    return 1 if unscored or not rows else 0


def _train(args) -> int:
    from denoise.train_job import train_folder

    best = train_folder(args.data, args.out, kind=args.model, dims=args.dims, noise=args.noise, config=args.config,
                        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, modality=args.modality,
                        lr=args.lr, init=args.init, resume=args.resume, device=args.device, progress=not args.quiet)
    print(f"best checkpoint: {best}")
    return 0


def _adapt(args) -> int:
    from denoise.adapt import adapt

    r = adapt(args.input, args.output, init=args.init, method=args.method, minutes=args.minutes,
              val_fraction=args.val_fraction, radius=args.radius, lr=args.lr, seed=args.seed, device=args.device,
              overwrite=args.overwrite, progress=not args.quiet, noise_sigma=args.noise_sigma, noise_corr=args.noise_corr,
              patience=args.patience)
    how = {"n2n": f"Noise2Noise on {r['repeat_scans']} scan(s) with repeats ({r['pairs']} ordered pairs)",
           "r2r": "recorrupted pairs", "blindspot": f"blind spot (radius {r['radius']})",
           "sure": "gains tuned by SURE"}[r["method"]]
    print(f"{how}; validation loss {r['start_val_loss']:.4g} -> {r['best_val_loss']:.4g} after {r['best_step']} of "
          f"{r['steps']} steps -> {args.output} (card: {args.output.with_suffix('.md')})")
    return 0


def _bench(args) -> int:
    from denoise.batch import UsageError
    from denoise.bench import run_benchmark, slow_methods_note

    if (args.data is None) == (args.real is None):
        raise UsageError("give either --data DIR --noise SPEC (synthetic noise) or --real DIR (repeated acquisitions)")
    if args.data is not None and not args.noise:
        raise UsageError("--data needs --noise SPEC[,SPEC...]")
    if not args.methods and not args.quiet:
        print(f"denoise bench: {slow_methods_note()}", file=sys.stderr)
    if args.real is not None:
        from denoise.bench_real import run_real_benchmark

        path = run_real_benchmark(args.real, args.out, methods=args.methods.split(",") if args.methods else None,
                                  max_repeats=args.max_repeats, progress=not args.quiet)
        print(f"-> {path}")
        return 0

    path = run_benchmark(args.data, args.noise.split(","), args.out,
                         methods=args.methods.split(",") if args.methods else None, mask=args.mask,
                         seed=args.seed, max_slices=args.max_slices, progress=not args.quiet)
    print(f"-> {path}")
    return 0


def _models(args) -> int:
    from denoise.cli_show import show_models

    return show_models()


def _info(args) -> int:
    from denoise.cli_show import show_info

    return show_info(args.path)


def _view(args) -> int:
    from denoise.viewer.launch import launch

    return launch(data_root=args.data_root, port=args.port, host=args.host)


if __name__ == "__main__":
    sys.exit(main())
