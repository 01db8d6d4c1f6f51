"""Command line: ``denoise <command>``. Each handler calls one library function.

Exit codes: 0 success, 1 some inputs failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
    from denoise import __version__

    p.add_argument("--version", action="version", version=f"denoise {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="denoise every DICOM series and NIfTI file under a folder")
    r.add_argument("-i", "--input", required=True, type=Path, help="input folder (never modified)")
    r.add_argument("-o", "--output", required=True, type=Path, help="output folder mirroring the input tree")
    r.add_argument("-m", "--model", help="shipped model name, checkpoint path, or a classical method "
                   "(gaussian, median, nlm, tv, wavelet, bm3d) (default: by modality)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    r.add_argument("--continue", dest="resume", action="store_true", help="skip scans already done")
    r.add_argument("--reference", type=Path, help="clean scans at the same relative paths: adds PSNR/SSIM")
    r.add_argument("--format", dest="fmt", default="same", choices=["same", "nifti"])
    r.add_argument("--tile", nargs=3, type=int, metavar=("Z", "Y", "X"), help="3D sliding-window tile")
    r.add_argument("--overlap", type=float, default=0.25)
    r.add_argument("--batch-size", type=int, default=None,
                   help="slices or 3D tiles per forward pass (default: 2 on CPU, 8 on GPU)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="parallel scans on a local Dask cluster")
    g.add_argument("--scheduler", help="address of an existing Dask scheduler, tcp://HOST:PORT")
    r.add_argument("--num-parts", type=int, default=1)
    r.add_argument("--part-id", type=int, default=0)
    r.add_argument("--noise-map", action="store_true", help="also write the removed noise")
    r.add_argument("--tta", action="store_true",
                   help="learned models: average over the 4 in-plane flips (4x slower, slightly better; removes the faint 2-pixel pattern)")
    r.add_argument("--planes", type=int, choices=[1, 3], default=None,
                   help="learned 2D models: 3 = on near-isotropic volumes also along the other two axes, averaged "
                        "(3x slower); 1 = never (mr-3d: its slab network everywhere). Default: the model's own "
                        "choice (mr-3d takes near-isotropic volumes along three planes with mr-2d)")
    r.add_argument("--strength", type=float, default=1.0,
                   help="0-1: blend the output with the input (0 = unchanged, 1 = full denoising, the default); "
                        "lower keeps more texture and faint structure")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(handler=_run)

    s = sub.add_parser("simulate", help="write noisy copies of every scan (same formats, mirrored tree)")
    s.add_argument("-i", "--input", required=True, type=Path)
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--noise", required=True, help="kind:level, e.g. rician:0.05 or lowdose:0.25")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(handler=_simulate)

    e = sub.add_parser("evaluate", help="PSNR/SSIM of denoised scans against references (paired by path)")
    e.add_argument("--denoised", required=True, type=Path)
    e.add_argument("--reference", required=True, type=Path)
    e.add_argument("--mask", default="auto", choices=["auto", "none"])
    e.add_argument("--out", type=Path, help="CSV file (default: DENOISED/evaluation.csv)")
    e.set_defaults(handler=_evaluate)

    t = sub.add_parser("train", help="train a model on a folder of clean scans")
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--model", choices=["dae", "vae", "sparse", "linear"], help="model family (default: dae)")
    t.add_argument("--dims", type=int, choices=[2, 3], help="spatial dims (default: 2)")
    t.add_argument("--noise", help="noise SPEC added on the fly (default: the --config file's, else the --init model's, else "
                        "rician:0.01-0.09 for MR, lowdose:0.1-0.5 for CT)")
    t.add_argument("--init", metavar="NAME|PATH",
                   help="fine-tune a shipped model or checkpoint on these scans (its architecture, intensity "
                        "scaling and patch size; learning rate 1e-4 unless set)")
    t.add_argument("--lr", type=float, help="learning rate (default: the config's, 1e-3; 1e-4 with --init)")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--config", type=Path, help="YAML with model: and train: sections")
    t.add_argument("--epochs", type=int)
    t.add_argument("--steps-per-epoch", type=int)
    t.add_argument("--modality", choices=["CT", "MR"], help="intensity scaling (default: from the scans)")
    t.add_argument("--resume", type=Path, help="last.pt to continue from")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(handler=_train)

    b = sub.add_parser("bench", help="compare methods on clean scans with synthetic noise, or on real repeats (--real)")
    b.add_argument("--data", type=Path, help="clean scans (synthetic-noise bench)")
    b.add_argument("--real", type=Path, metavar="DIR",
                   help="scans with repeated acquisitions (4D): score each repeat against the others (real noise)")
    b.add_argument("--max-repeats", type=int, default=None, help="--real: score at most N repeats per scan")
    b.add_argument("--noise", help="SPEC[,SPEC...] (required with --data)")
    b.add_argument("--methods", help="comma list (default: all available)")
    b.add_argument("--mask", default="auto", choices=["auto", "none"])
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-slices", type=int, default=None, help="evaluate a centred slab of at most N slices")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(handler=_bench)

    m = sub.add_parser("models", help="list the shipped pretrained models")
    m.set_defaults(handler=_models)

    n = sub.add_parser("info", help="what a file or folder holds (no patient names)")
    n.add_argument("path", type=Path)
    n.set_defaults(handler=_info)

    v = sub.add_parser("view", help="start the Streamlit viewer")
    v.add_argument("--data-root", type=Path, default=None)
    v.add_argument("--port", type=int, default=8501)
    v.add_argument("--host", default="127.0.0.1")
    v.set_defaults(handler=_view)
    return p


def _run(args) -> int:
    import signal

    from denoise.batch import denoise_folder

    # SIGTERM (kill, a cluster's job scheduler) unwinds like Ctrl-C: the lock on OUT is released
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # noqa: B023

    s = denoise_folder(args.input, args.output, model=args.model, device=args.device, resume=args.resume,
                       reference=args.reference, fmt=args.fmt, tile=tuple(args.tile) if args.tile else None,
                       overlap=args.overlap, batch_size=args.batch_size, noise_map=args.noise_map, tta=args.tta,
                       planes=args.planes, strength=args.strength, workers=args.workers, scheduler=args.scheduler, num_parts=args.num_parts,
                       part_id=args.part_id, progress=not args.quiet)
    print(f"{s['ok']} ok, {s['failed']} failed, {s['skipped']} skipped -> {Path(args.output) / s['manifest']}")
    return 1 if s["failed"] else 0


def _simulate(args) -> int:
    from denoise.workflows import simulate_folder

    s = simulate_folder(args.input, args.output, args.noise, seed=args.seed, progress=not args.quiet)
    print(f"{s['ok']} noisy copies written, {s['failed']} failed -> {args.output}")
    return 1 if s["failed"] else 0


def _evaluate(args) -> int:
    from denoise.workflows import evaluate_folder

    rows, path = evaluate_folder(args.denoised, args.reference, mask=args.mask, out=args.out)
    for r in rows:
        print(f"{r['scan']}\tpsnr={r['psnr']}\tssim={r['ssim']}\tdata_range={r['data_range']}\t{r['reason']}")
    print(f"-> {path}")
    return 1 if any(r["reason"] for r in rows) else 0


def _train(args) -> int:
    from denoise.workflows import train_folder

    best = train_folder(args.data, args.out, kind=args.model, dims=args.dims, noise=args.noise, config=args.config,
                        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, modality=args.modality,
                        lr=args.lr, init=args.init, resume=args.resume, device=args.device, progress=not args.quiet)
    print(f"best checkpoint: {best}")
    return 0


def _bench(args) -> int:
    from denoise.batch import UsageError
    from denoise.bench import run_benchmark

    if (args.data is None) == (args.real is None):
        raise UsageError("give either --data DIR --noise SPEC (synthetic noise) or --real DIR (repeated acquisitions)")
    if args.real is not None:
        from denoise.bench_real import run_real_benchmark

        path = run_real_benchmark(args.real, args.out, methods=args.methods.split(",") if args.methods else None,
                                  max_repeats=args.max_repeats, progress=not args.quiet)
        print(f"-> {path}")
        return 0
    if not args.noise:
        raise UsageError("--data needs --noise SPEC[,SPEC...]")

    path = run_benchmark(args.data, args.noise.split(","), args.out,
                         methods=args.methods.split(",") if args.methods else None, mask=args.mask,
                         seed=args.seed, max_slices=args.max_slices, progress=not args.quiet)
    print(f"-> {path}")
    return 0


def _models(args) -> int:
    from denoise.pretrained import list_pretrained

    models = list_pretrained()
    if not models:
        print("no shipped models found")
    for m in models:
        print(f"{m['name']:14s} {m['kind']:7s} {m['dims']}D  noise {m['noise']:18s} val PSNR {m['val_psnr']}  "
              f"{m['summary']}")
    return 0


def _info(args) -> int:
    """One line per scan and per skipped file; 1 when nothing usable was found or something
    failed to read (like ``run``), 0 when every scan read. Messages name paths relative to PATH."""
    from denoise.io import ScanReadError, discover_scans
    from denoise.manifest import relative_reason

    def one_line(reason: str) -> str:  # no newlines; paths relative to PATH (as each line starts), no others
        return " ".join(relative_reason(reason, [Path(args.path)]).split())

    scans, skipped = discover_scans(args.path)
    failed = 0
    for s in scans:
        try:
            d = s.load().describe()
            print(f"{s.relpath}\t{d['format']}\t{d['kind']}\t{d['modality']}\tshape {d['shape']}\tspacing {d['spacing']} mm"
                  f"\t{len(s.files)} file(s)\t{d['transfer_syntax']}")
        except Exception as exc:
            failed += 1
            why = exc.reason if isinstance(exc, ScanReadError) else f"{type(exc).__name__}: {exc}"
            print(f"{s.relpath}\tunreadable: {one_line(why)}")
    for k in skipped:
        failed += k.failed
        print(f"{k.relpath}\t{'unreadable' if k.failed else 'skipped'}: {one_line(k.reason)}")
    if not scans:
        n = len(skipped)
        print(f"denoise: no DICOM or NIfTI scans found under {args.path} ({n} file{'s' * (n != 1)} looked at)",
              file=sys.stderr)
        return 1
    if failed:
        print(f"denoise: {failed} scan(s) or file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _view(args) -> int:
    from denoise.viewer.launch import launch

    return launch(data_root=args.data_root, port=args.port, host=args.host)


if __name__ == "__main__":
    sys.exit(main())
