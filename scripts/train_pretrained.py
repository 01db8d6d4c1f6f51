"""Train the shipped pretrained models from the real scans in ../shared/data (CPU, 2 cores).

    python scripts/train_pretrained.py --model mr-2d [--bf16] [--data ../shared/data] [--print-config]

Each model's recipe (denoise.recipes.RECIPES, which also trains one from Python) is the run that ships; scripts/train_all.sh runs them all in order,
with the --init of the grown ones (mr-3d from mr-2d, ct-2d from its first phase). Options replace
the recipe's settings for experiments. Writes runs/<run-name>/ (checkpoints, history.json) and,
unless --no-ship, denoise/pretrained/<name>.pt (the model cards: scripts/write_model_cards.py).
Held out from every model (test data for docs/benchmarks.md): MR nifti/mr_t1_electrodes_seg3d,
CT dicom/ge_ct_colonography_3slices and nifti/ct_thorax_4dct_philips_itkelastix.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from denoise import recipes
from denoise.config import to_dict

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(recipes.RECIPES))
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=None, help="training steps replacing the recipe's")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--init", type=Path, help="fine-tune: start from this checkpoint's weights (same architecture)")
    p.add_argument("--lr", type=float, help="learning rate (default: the TrainConfig default)")
    p.add_argument("--run-name", help="folder under runs/ (default: the model name)")
    p.add_argument("--take", choices=["best", "last"], default="last",
                   help="ship the best-validation checkpoint or the last one (end of the schedule; no early stop)")
    p.add_argument("--all-axes", action="store_true", help="2D: slice training patches along all three axes")
    p.add_argument("--contrast-augment", type=float, default=None,
                   help="probability of MONAI intensity remapping/darkening of clean patches (TrainConfig.contrast_augment)")
    p.add_argument("--coarse-augment", type=float, default=None,
                   help="probability of 2x in-plane block-averaged patches (TrainConfig.coarse_augment)")
    p.add_argument("--coarse-max", type=int, default=None,
                   help="largest coarse factor: coarse patches at 2..N x the pixel size (TrainConfig.coarse_max)")
    p.add_argument("--coarse-kspace", type=float, default=None,
                   help="probability that a coarse patch is cut from k-space (sinc blur, Gibbs ringing) "
                        "instead of block-averaged (TrainConfig.coarse_kspace)")
    p.add_argument("--blur-augment", type=float, default=None,
                   help="probability that a clean patch is blurred as a zero-filling, apodising reconstruction "
                        "blurs it (TrainConfig.blur_augment)")
    p.add_argument("--fine-augment", type=float, default=None,
                   help="probability of 2x in-plane upsampled patches (TrainConfig.fine_augment)")
    p.add_argument("--thick-augment", type=float, default=None,
                   help="probability of patches whose slices are 2-3 apart (TrainConfig.thick_augment)")
    p.add_argument("--reference-noise", type=float, default=None,
                   help="lowdose: full-dose noise std kept in the target, up to this (normalised scale; "
                        "TrainConfig.reference_noise)")
    p.add_argument("--shift-consistency", type=float, default=None,
                   help="weight of the one-pixel shift-consistency term (TrainConfig.shift_consistency)")
    p.add_argument("--context", type=int, default=None,
                   help="2D: neighbouring slices per side, replacing the recipe's (with --init from a model with fewer: "
                        "its first convolution is widened with zero weights; denoise.models.grow)")
    p.add_argument("--channels", help="DAE level widths replacing the recipe's, e.g. 32,64,128 (with --init from a "
                                      "narrower model: Net2WiderNet start with the same output; denoise.models.grow)")
    p.add_argument("--tail", type=int, default=None,
                   help="DAE full-resolution refinement channels (ModelConfig.tail; with --init from a model without one: "
                        "added at zero, the same output at the start)")
    p.add_argument("--lesion-augment", type=float, default=None,
                   help="probability of small faint blobs in a clean patch (TrainConfig.lesion_augment)")
    p.add_argument("--lesion-weight", type=float, default=None,
                   help="extra loss weight on the pixels of inserted blobs (TrainConfig.lesion_weight)")
    p.add_argument("--noise-weighting", type=float, default=None, metavar="P",
                   help="per-patch loss weight (0.05 / max(sigma, 0.005))^P, sigma the patch's added noise: 2 weighs "
                        "every noise level alike in dB (TrainConfig.noise_weighting)")
    p.add_argument("--shuffle", type=int, choices=[1, 2, 4], help="DAE pixel-unshuffle factor replacing the recipe's "
                                                                  "(a new architecture: train from scratch)")
    p.add_argument("--patch-size", type=int, help="training patch edge replacing the recipe's")
    p.add_argument("--batch-size", type=int, help="patches per step replacing the recipe's")
    p.add_argument("--slab", type=int, default=None, metavar="DEPTH_LEVELS",
                   help="make the model a 3D slab DAE whose DEPTH_LEVELS deepest levels span 3 slices (with --init "
                        "from a 2.5D model: the same output at the start; denoise.models.grow)")
    p.add_argument("--patch-depth", type=int, default=None, help="3D: slices per training patch (TrainConfig.patch_depth)")
    p.add_argument("--val-scans", help="comma-separated indices of the validation scans: the recipe's files in order "
                                       "(two halves each where the recipe splits them, then its pseudo-CT volumes; "
                                       "TrainConfig.val_scans; default: the seeded random split)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes drawing training batches (TrainConfig.num_workers; for a GPU)")
    p.add_argument("--noise", help="noise spec replacing the recipe's, e.g. rician:0.002-0.09")
    p.add_argument("--seed", type=int, default=0, help="seeds patches, noise, augmentation and initial weights "
                                                      "(the recipes use 0)")
    p.add_argument("--loss", choices=["mse", "l1"], help="reconstruction loss replacing the recipe's (TrainConfig.loss)")
    p.add_argument("--contractive-weight", type=float, help="cae: weight of the Jacobian penalty (TrainConfig.contractive_weight)")
    p.add_argument("--ema", type=float, help="exponential moving average of the weights, decay per step (TrainConfig.ema)")
    p.add_argument("--grad-clip", type=float, help="largest global gradient norm per step (TrainConfig.grad_clip)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast on the CPU (TrainConfig.cpu_bf16; ~1.5x faster with AVX512-BF16/AMX)")
    p.add_argument("--no-ship", action="store_true", help="leave denoise/pretrained/ alone (experiments)")
    p.add_argument("--extra-pseudo-ct", action="store_true",
                   help="ct-2d: add the remapped pseudo-CT variants (PSEUDO_CT_REMAPPED) to the recipe's")
    p.add_argument("--clean-targets", choices=["nlm", "bm3d"],
                   help="denoise the training volumes with this classical method first (noise-free targets; "
                        "an experiment, see docs/design.md)")
    p.add_argument("--clean-extra", choices=["nlm", "bm3d"],
                   help="denoise only the --extra-files volumes with this classical method first (real scans with noise "
                        "of their own as training anatomy, e.g. the chest CT)")
    p.add_argument("--files", help="comma-separated volumes (relative to --data) replacing the recipe's training files; "
                                    "MR_TRAIN, MR_EXTRA and CT_EXTRA name those lists")
    p.add_argument("--extra-files", help="comma-separated volumes (relative to --data) added to the recipe's training "
                                         "files, e.g. the larger real set (MR_EXTRA)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--print-config", action="store_true",
                   help="print the model and training configuration this command line resolves to, and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    recipe = recipes.RECIPES[args.model]
    model_changes: dict = {k: v for k, v in [("context", args.context), ("shuffle", args.shuffle), ("tail", args.tail)]
                           if v is not None}
    if args.channels:
        model_changes["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.slab is not None:
        model_changes.update(spatial_dims=3, slab=True, depth_levels=args.slab)
    files = None
    named = {"MR_TRAIN": recipes.MR_TRAIN, "MR_EXTRA": recipes.MR_EXTRA, "CT_EXTRA": recipes.CT_EXTRA}
    if args.files:
        files = named.get(args.files) or [f.strip() for f in args.files.split(",") if f.strip()]
    if args.extra_files:
        extra = named.get(args.extra_files) or [f.strip() for f in args.extra_files.split(",") if f.strip()]
        files = [*(files or recipe["files"]), *extra]
    train_changes = {k: v for k, v in [("lr", args.lr or None), ("all_axes", args.all_axes or None),
                                       ("contrast_augment", args.contrast_augment), ("coarse_augment", args.coarse_augment),
                                       ("coarse_max", args.coarse_max), ("coarse_kspace", args.coarse_kspace), ("blur_augment", args.blur_augment),
                                       ("fine_augment", args.fine_augment), ("thick_augment", args.thick_augment),
                                       ("lesion_augment", args.lesion_augment), ("lesion_weight", args.lesion_weight), ("noise_weighting", args.noise_weighting), ("reference_noise", args.reference_noise),
                                       ("shift_consistency", args.shift_consistency), ("noise", args.noise),
                                       ("patch_size", args.patch_size), ("batch_size", args.batch_size),
                                       ("patch_depth", args.patch_depth), ("num_workers", args.workers),
                                       ("cpu_bf16", args.bf16 or None), ("loss", args.loss), ("ema", args.ema),
                                       ("grad_clip", args.grad_clip), ("contractive_weight", args.contractive_weight),
                                       ("val_scans", tuple(int(i) for i in args.val_scans.split(",")) if args.val_scans else None)]
                     if v is not None}  # options given on the command line replace the recipe's/TrainConfig's
    kwargs = dict(model_changes=model_changes, train_changes=train_changes, files=files,
                  extra_pseudo_ct=args.extra_pseudo_ct, steps=args.steps, take=args.take, seed=args.seed)
    try:  # inconsistent options are refused with a usage error before anything loads or trains
        model, train, resolved = recipes.recipe_configs(args.model, **kwargs)
    except ValueError as exc:
        p.error(str(exc))
    if args.print_config:  # what this command line would train, without training it
        print(json.dumps({"model": to_dict(model), "train": to_dict(train), "init": str(args.init or ""),
                          "files": resolved["files"], "pseudo_ct": resolved.get("pseudo_ct", [])}, indent=1, default=str))
        return 0
    if recipe.get("experiment") and not args.no_ship:
        p.error(f"{args.model} is an experiment, not a shipped model: pass --no-ship")
    if recipe.get("grown_from") and not args.init and not args.no_ship:
        p.error(f"{args.model} ships grown from {recipe['grown_from']}: pass --init CHECKPOINT (or --no-ship to experiment)")
    clean = args.clean_targets
    if args.clean_extra:
        if not args.extra_files or args.clean_targets:
            p.error("--clean-extra cleans the --extra-files volumes (and not with --clean-targets)")
        clean = {f: args.clean_extra for f in files if f not in recipe["files"]}
    out = Path("runs") / (args.run_name or args.model)
    history = recipes.train_recipe(args.model, args.data, out, init=args.init, resume=args.resume,
                                   clean_targets=clean, **kwargs)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    if args.no_ship:
        logging.info("done: %s (not shipped)", out / f"{args.take}.pt")
        return 0
    dest = ROOT / "denoise" / "pretrained"
    dest.mkdir(parents=True, exist_ok=True)
    recipes.ship(out / f"{args.take}.pt", dest / f"{args.model}.pt", inference=recipe.get("inference"))
    logging.info("done: %s", dest / f"{args.model}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
