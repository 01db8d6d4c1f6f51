"""Train the shipped pretrained models from the real scans in ../shared/data (CPU, 2 cores).

    python scripts/train_pretrained.py --model mr-2d [--bf16] [--data ../shared/data] [--print-config]

Each model's recipe (RECIPES) is the run that ships; scripts/train_all.sh runs them all in order,
with the --init of the grown ones (mr-3d from mr-2d, ct-2d from its first phase). Options replace
the recipe's settings for experiments. Writes runs/<run-name>/ (checkpoints, history.json) and,
unless --no-ship, denoise/pretrained/<name>.pt (the model cards: scripts/write_model_cards.py).
Held out from every model (test data for docs/benchmarks.md): MR nifti/mr_t1_electrodes_seg3d,
CT dicom/ge_ct_colonography_3slices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig, to_dict
from denoise.io import read_scan
from denoise.normalize import Normalization
from denoise.scan import Scan
from denoise.train import fit

MR_TRAIN = ["nifti/mr_t1_stroke_brainextracted_vrd.nii.gz", "nifti/mr_flair_stroke_brainextracted_vrd.nii.gz",
            "nifti/mr_t2_stroke_clinical.nii.gz", "nifti/mr_t1_template_spm152_niivue.nii.gz"]
CT_TRAIN = ["nifti/ct_template_scct_clinical.nii.gz", "nifti/ct_cta_aorta_stent_imageio.nii.gz"]
# Anatomy borrowed for CT training: MR volumes mapped to pseudo-HU (air -1000 HU, tissue contrast of
# some hundred HU), one volume per slope. The two real CTs have no air-tissue boundary (the scct
# template is smooth at 2 mm, the CTA is clipped at 0 HU), which real low-dose CT is full of. The
# noise is still physical: sinogram low-dose noise computed from each pseudo-HU volume.
# An optional third item remaps the MR intensities first with a seeded random monotone
# piecewise-linear curve (MONAI RandHistogramShift): tissue levels other than the MR contrast's
# (fat-like, soft-tissue-like plateaus); the noise is computed afterwards on the remapped HU volume.
PSEUDO_CT = [("nifti/mr_t1_template_spm152_niivue.nii.gz", 1300.0), ("nifti/mr_t1_template_spm152_niivue.nii.gz", 1800.0),
             ("nifti/mr_t1_stroke_brainextracted_vrd.nii.gz", 1300.0), ("nifti/mr_flair_stroke_brainextracted_vrd.nii.gz", 1500.0),
             ("nifti/mr_t2_stroke_clinical.nii.gz", 1100.0)]
# Tried (--extra-pseudo-ct, 4000 steps from scratch like the shipped recipe) and not shipped: held-out
# GE CT 25% dose 40.00 -> 38.47 dB blind, 10% 37.58 -> 36.99 (the remapped plateaus look less like
# body CT than the plain mapping does).
PSEUDO_CT_REMAPPED = [("nifti/mr_t1_template_spm152_niivue.nii.gz", 1500.0, 1), ("nifti/mr_t2_stroke_clinical.nii.gz", 1300.0, 2),
                      ("nifti/mr_flair_stroke_brainextracted_vrd.nii.gz", 1200.0, 3), ("nifti/mr_t1_stroke_brainextracted_vrd.nii.gz", 1600.0, 4)]
HELD_OUT = ["nifti/mr_t1_electrodes_seg3d.nii.gz", "dicom/ge_ct_colonography_3slices"]
# The larger real MR set (issues #28/#31), one split per subject: MS patients 01, 03 and 04 train,
# patient 12 stays out (lesion checks), as do every EPI (the real-noise benchmark's repeats), the
# second tumour patient and the ADI volunteer (other scanners' checks).
MR_EXTRA = ["nifti/mr_t1gd_tumour_pyradiomics_1.nii.gz", "nifti/mr_t1_mprage_child_siemens_sag_anon.nii.gz",
            "nifti/mr_t2_prostate_monai.nii.gz", "nifti/mr_ms_patient01_t1w.nii.gz", "nifti/mr_ms_patient01_t2w.nii.gz",
            "nifti/mr_ms_patient01_flair.nii.gz", "nifti/mr_ms_patient04_t1w.nii.gz", "nifti/mr_ms_patient04_t2w.nii.gz",
            "nifti/mr_ms_patient04_flair.nii.gz", "nifti/mr_ms_patient03_t2w.nii.gz", "nifti/mr_ms_patient03_flair.nii.gz"]

MR_NORM = Normalization(kind="percentile")
CT_NORM = Normalization(kind="window", low=-1000, high=1000)

# Each recipe is the run that ships (scripts/train_all.sh runs them in order): its architecture, its
# TrainConfig fields and its step count, so `train_pretrained.py --model NAME` alone trains what
# ships (`--print-config` shows the resolved configs). `grown_from`: the model starts from another
# run's weights (--init; denoise.models.grow), without which it is not shipped.
MR_DAE_TRAIN = dict(noise="rician:0.002-0.09", patch_size=64, normalization=MR_NORM, contrast_augment=0.5,
                    coarse_augment=0.3, val_scans=(1,))  # validated on the FLAIR (the recipe's second file)
RECIPES = {
    # FFDNet-style: pixel-unshuffle x2 (4x fewer FLOPs per pixel at the same width), noise-level
    # channel; 2.5D with two neighbouring slices each side. Two phases (issue #31): the first trains
    # on MR_TRAIN from scratch (`--files MR_TRAIN --tail 0 --lesion-augment 0 --shift-consistency 0
    # --lr 2e-3 --steps 10000 --workers 0 --bf16`, 24-30 min), this one grows it a full-resolution
    # tail (zero output at the start) and fine-tunes on the larger real set with faint blobs in half
    # the patches and the one-pixel shift-consistency term (float32, ~70 min): the tail removes the
    # 2-pixel pattern, the blobs keep small lesions
    "mr-2d": dict(files=MR_TRAIN + MR_EXTRA, model=ModelConfig(kind="dae", spatial_dims=2, channels=(32, 64, 128), noise_channel=True,
                                                                shuffle=2, context=2, tail=16),
                  train=dict(MR_DAE_TRAIN, batch_size=32, lr=5e-4, lesion_augment=0.5, shift_consistency=2.0, num_workers=1),
                  steps=8000, grown_from="its first phase (the options above)"),
    # two phases: single slices with noise-free targets (`--context 0 --lr 1e-3 --reference-noise 0
    # --steps 6000`), then this one, grown to one neighbouring slice each side (zero weights) with
    # full-dose targets keeping 0-25 HU of their own noise
    "ct-2d": dict(files=CT_TRAIN, model=ModelConfig(kind="dae", spatial_dims=2, channels=(32, 64, 128), noise_channel=True,
                                                     shuffle=2, context=1),
                  # dose is relative to each training volume; these small volumes have ~2-8 HU of
                  # full-dose noise, so 0.1-25% dose gives ~4-250 HU (a 1% floor, tried, left the model
                  # unable to denoise the held-out abdomen at 10% dose, ~35 HU added: a 35-cm body is
                  # far noisier per dose than a head-sized volume). Half the patches anywhere: air and
                  # air-tissue edges are absent from foreground patches
                  train=dict(noise="lowdose:0.001-0.25", patch_size=64, batch_size=16, normalization=CT_NORM,
                             foreground_fraction=0.5, val_fraction=0.25, lr=3e-4, reference_noise=0.0125),
                  steps=8000, halves=True, pseudo_ct=PSEUDO_CT, grown_from="its first phase (--context 0)"),
    # mr-3d is the slab (slice-preserving) 3D form of mr-2d: grown from it with the same output
    # (--init a 2.5D mr-2d checkpoint; denoise.models.grow) and fine-tuned on 16-slice patches, its
    # three levels' convolutions spanning 3 slices, half of them with slices 2-3 apart. (The earlier
    # isotropic 3D DAE, channels 24,48,96, unshuffle in all three axes, 48^3 patches, trained from
    # scratch in four phases, trailed mr-2d by 0.9-1.8 dB: 3D training on 2 cores never got as far
    # as the 2D model.)
    "mr-3d": dict(files=MR_TRAIN, model=ModelConfig(kind="dae", spatial_dims=3, channels=(32, 64, 128), noise_channel=True,
                                                     shuffle=2, context=2, slab=True, depth_levels=3),
                  train=dict(MR_DAE_TRAIN, patch_depth=16, batch_size=4, lr=1e-4, thick_augment=0.5), steps=4000,
                  grown_from="mr-2d",
                  # on near-isotropic volumes mr-3d runs mr-2d along the three planes instead (denoise.infer:
                  # held-out T1 +0.3 dB over either network alone; the slab network stays for thick slices)
                  inference={"isotropic_model": "mr-2d"}),
    "vae-mr-2d": dict(files=MR_TRAIN, model=ModelConfig(kind="vae", spatial_dims=2, channels=(16, 32, 64),
                                                         latent_channels=16, residual=False),
                      train=dict(noise="rician:0.01-0.09", patch_size=64, batch_size=16, normalization=MR_NORM,
                                 beta=1e-3, beta_warmup_epochs=5), steps=3000),
    # trains in float32 (with --bf16 it lost 0.4-0.8 dB; the VAE did not)
    "sparse-mr-2d": dict(files=MR_TRAIN, model=ModelConfig(kind="sparse", spatial_dims=2, channels=(16, 32, 64),
                                                            latent_channels=32, residual=False),
                         train=dict(noise="rician:0.01-0.09", patch_size=64, batch_size=16, normalization=MR_NORM,
                                    sparsity_weight=1e-3), steps=3000),
    # the contractive AE: the sparse AE's bottleneck network, the penalty on its encoder's Jacobian
    # (Hutchinson, one JVP per step) instead of the L1 on its code; weight from the sweep of
    # scripts/contractive_sweep.py (docs/benchmarks.md, "Contractive autoencoder")
    "cae-mr-2d": dict(files=MR_TRAIN, model=ModelConfig(kind="cae", spatial_dims=2, channels=(16, 32, 64),
                                                         latent_channels=32, residual=False),
                      train=dict(noise="rician:0.01-0.09", patch_size=64, batch_size=16, normalization=MR_NORM,
                                 contractive_weight=1e-2), steps=3000),
}


def cormack_to_hu(c: np.ndarray) -> np.ndarray:
    """Invert Rorden's Clinical-toolbox HU -> 'Cormack' mapping used by the scct template
    (v = HU + 1024; v in [900, 1100] stretched x10): brain lands near 20 HU, air at -1024."""
    v = np.where(c < 900, c, np.where(c < 2900, 900 + (c - 900) / 10.0, 1100 + (c - 2900)))
    return (v - 1024).astype(np.float32)


def pseudo_ct(scan: Scan, variants: list[tuple]) -> list[Scan]:
    """An MR volume as CT-like anatomy, one Scan per variant ``(slope,)`` or ``(slope, remap_seed)``:
    first cleaned with non-local means (the clinical MR volumes carry 2-3% noise, which would become
    25-45 HU of noise in the target), optionally remapped by a seeded random monotone curve, then
    mapped linearly to HU, 0 -> -1000 HU (air) and the robust maximum -> -1000 + ``slope``."""
    from monai.transforms import RandHistogramShift

    from denoise.infer import denoise_scan
    from denoise.models import ClassicalDenoiser
    from denoise.normalize import reference_intensity

    clean = np.clip(denoise_scan(scan, ClassicalDenoiser("nlm")).array, 0.0, None)
    unit = clean / reference_intensity(clean)
    out = []
    for slope, *remap in variants:
        v = unit
        if remap:
            curve = RandHistogramShift(num_control_points=(4, 8), prob=1.0)
            curve.set_random_state(seed=int(remap[0]))
            v = np.asarray(curve(unit), dtype=np.float32)
        out.append(Scan(-1000.0 + slope * v, scan.spacing, scan.affine, "CT"))
    return out


def load_training_scans(data: Path, files: list[str], *, halves: bool = False,
                        pseudo: list[tuple[str, float]] = (), clean: str | None = None) -> list[Scan]:
    """Read the training volumes; with ``halves`` each is split into two slabs along z (so a
    validation slab exists for every subject when there are only two subjects, as for CT). With
    ``clean`` (MR: "nlm" or "bm3d") each volume is first denoised by that classical method, sigma
    estimated per slice, so that the targets lose the volumes' own noise (2-3% of the maximum for
    the clinical T1 and FLAIR)."""
    from denoise.infer import denoise_scan
    from denoise.models import ClassicalDenoiser

    scans = []
    for rel in files:
        s = read_scan(data / rel)
        if "scct" in rel:
            s = s.with_array(cormack_to_hu(s.array))
        if clean:
            s = s.with_array(np.clip(denoise_scan(s, ClassicalDenoiser(clean)).array, 0.0, None))
        if halves:
            mid = s.array.shape[0] // 2
            scans += [Scan(s.array[:mid], s.spacing, s.affine, s.modality), Scan(s.array[mid:], s.spacing, s.affine, s.modality)]
        else:
            scans.append(s)
    by_file: dict[str, list[tuple]] = {}  # each MR volume is read and cleaned once, in recipe order
    for rel, *variant in pseudo:
        by_file.setdefault(rel, []).append(tuple(variant))
    made = {rel: pseudo_ct(read_scan(data / rel), variants) for rel, variants in by_file.items()}
    for rel, *variant in pseudo:
        scans.append(made[rel][by_file[rel].index(tuple(variant))])
    return scans


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(RECIPES))
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
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
                   help="MR: denoise the training volumes with this classical method first (noise-free targets; "
                        "an experiment, see docs/design.md)")
    p.add_argument("--files", help="comma-separated volumes (relative to --data) replacing the recipe's training files; "
                                    "MR_TRAIN or MR_EXTRA name those lists")
    p.add_argument("--extra-files", help="comma-separated volumes (relative to --data) added to the recipe's training "
                                         "files, e.g. the larger real set (MR_EXTRA)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--print-config", action="store_true",
                   help="print the model and training configuration this command line resolves to, and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    recipe = dict(RECIPES[args.model])
    changes: dict = {}
    if args.context is not None:
        changes["context"] = args.context
    if args.channels:
        changes["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.shuffle is not None:
        changes["shuffle"] = args.shuffle
    if args.tail is not None:
        changes["tail"] = args.tail
    if args.slab is not None:
        changes.update(spatial_dims=3, slab=True, depth_levels=args.slab)
    recipe["model"] = dataclasses.replace(recipe["model"], **changes)
    if args.files:
        named = {"MR_TRAIN": MR_TRAIN, "MR_EXTRA": MR_EXTRA}
        recipe["files"] = named.get(args.files) or [f.strip() for f in args.files.split(",") if f.strip()]
    if args.extra_files:
        extra = MR_EXTRA if args.extra_files == "MR_EXTRA" else [f.strip() for f in args.extra_files.split(",") if f.strip()]
        recipe["files"] = [*recipe["files"], *extra]
    if args.extra_pseudo_ct:
        recipe["pseudo_ct"] = [*recipe.get("pseudo_ct", ()), *PSEUDO_CT_REMAPPED]
    steps = args.steps or recipe["steps"]
    epochs = 25
    overrides = {k: v for k, v in [("lr", args.lr or None), ("all_axes", args.all_axes or None),
                                   ("contrast_augment", args.contrast_augment), ("coarse_augment", args.coarse_augment),
                                   ("fine_augment", args.fine_augment), ("thick_augment", args.thick_augment),
                                   ("lesion_augment", args.lesion_augment),
                                   ("reference_noise", args.reference_noise),
                                   ("shift_consistency", args.shift_consistency), ("noise", args.noise),
                                   ("patch_size", args.patch_size), ("batch_size", args.batch_size),
                                   ("patch_depth", args.patch_depth), ("num_workers", args.workers),
                                   ("cpu_bf16", args.bf16 or None), ("loss", args.loss), ("ema", args.ema), ("grad_clip", args.grad_clip),
                                   ("contractive_weight", args.contractive_weight),
                                   ("val_scans", tuple(int(i) for i in args.val_scans.split(",")) if args.val_scans else None)]
                 if v is not None}  # options given on the command line replace the recipe's/TrainConfig's
    train_cfg = TrainConfig(**{**recipe["train"], **overrides}, epochs=epochs, steps_per_epoch=max(4, steps // epochs),
                            early_stop_patience=8 if args.take == "best" else epochs, val_patches=48, seed=args.seed)
    if args.print_config:  # what this command line would train, without training it
        print(json.dumps({"model": to_dict(recipe["model"]), "train": to_dict(train_cfg), "init": str(args.init or ""),
                          "files": recipe["files"], "pseudo_ct": recipe.get("pseudo_ct", [])}, indent=1, default=str))
        return 0
    if recipe.get("grown_from") and not args.init and not args.no_ship:
        p.error(f"{args.model} ships grown from {recipe['grown_from']}: pass --init CHECKPOINT (or --no-ship to experiment)")
    if args.clean_targets and recipe["train"]["normalization"].kind == "window":
        p.error("--clean-targets is for the MR recipes (it clips at 0, as for magnitude images)")
    scans = load_training_scans(args.data, recipe["files"], halves=recipe.get("halves", False),
                                pseudo=recipe.get("pseudo_ct", ()), clean=args.clean_targets)
    out = Path("runs") / (args.run_name or args.model)
    resume = out / "last.pt" if args.resume and (out / "last.pt").exists() else None
    history = fit(recipe["model"], train_cfg, scans, out, name=args.model, resume=resume, init=args.init,
                  data_summary={"files": recipe["files"], "held_out": HELD_OUT,
                                **({"targets_cleaned_with": args.clean_targets} if args.clean_targets else {}),
                                **({"pseudo_ct": [f"{r} (slope {k:g} HU{f', remapped, seed {x[0]}' if x else ''})" for r, k, *x in recipe["pseudo_ct"]]}
                                   if "pseudo_ct" in recipe else {})})
    (out / "history.json").write_text(json.dumps(history, indent=1))
    if args.no_ship:
        logging.info("done: %s (not shipped)", out / f"{args.take}.pt")
        return 0
    dest = Path(__file__).resolve().parents[1] / "denoise" / "pretrained"
    dest.mkdir(parents=True, exist_ok=True)
    ship(out / f"{args.take}.pt", dest / f"{args.model}.pt", inference=recipe.get("inference"))
    logging.info("done: %s", dest / f"{args.model}.pt")
    return 0


def ship(src: Path, dest: Path, inference: dict | None = None) -> None:
    """Copy a checkpoint into the package with weights and config only (no optimiser state), and
    the recipe's ``inference`` settings (`denoise.infer.load_model`)."""
    net, info, _ = load_checkpoint(src)
    if inference:
        info["inference"] = inference
    save_checkpoint(dest, net, info)


if __name__ == "__main__":
    sys.exit(main())
