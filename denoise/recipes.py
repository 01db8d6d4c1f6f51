"""The shipped models' training recipes, their data and how to train one from Python.

Each recipe (`RECIPES`) is the run that ships: its architecture, its `TrainConfig` fields, its step
count and its training files (relative to a data folder laid out like ../shared/data, see its
SOURCES.md), so that a shipped model can be retrained from Python (`train_recipe`) or from
``scripts/train_pretrained.py`` (a command line over this module; ``scripts/train_all.sh`` runs every
recipe in order, with the ``--init`` of the grown ones). tests/test_recipes.py checks that every
recipe resolves to the settings recorded inside its shipped checkpoint.
Held out from every model (test data for docs/benchmarks.md): `HELD_OUT`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.io import read_scan
from denoise.normalize import Normalization
from denoise.scan import Scan

__all__ = ["RECIPES", "MR_TRAIN", "MR_EXTRA", "MR_EXTRA_NON_MS", "CT_TRAIN", "CT_EXTRA", "HELD_OUT", "MR_NORM", "CT_NORM", "MS_FLAIR_T2",
           "EPOCHS", "recipe_configs", "train_recipe", "load_training_scans", "ship", "cormack_to_hu", "pseudo_ct"]

EPOCHS = 25  # every recipe's schedule: its steps spread over 25 epochs (validation after each)

MR_TRAIN = ["nifti/mr_t1_stroke_brainextracted_vrd.nii.gz", "nifti/mr_flair_stroke_brainextracted_vrd.nii.gz",
            "nifti/mr_t2_stroke_clinical.nii.gz", "nifti/mr_t1_template_spm152_niivue.nii.gz"]
CT_TRAIN = ["nifti/ct_template_scct_clinical.nii.gz", "nifti/ct_cta_aorta_stent_imageio.nii.gz"]
# the larger real CT set (issue #31): the Philips chest CT (LIDC), real body CT texture, lungs and
# air-tissue edges (`--extra-files CT_EXTRA`); the Philips 4D-CT thorax (another patient and scanner
# model) stays out, as an unseen CT check (docs/benchmarks/ctother)
CT_EXTRA = ["nifti/ct_chest_philips_fnndsc.nii.gz"]
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
HELD_OUT = ["nifti/mr_t1_electrodes_seg3d.nii.gz", "dicom/ge_ct_colonography_3slices",
            "nifti/ct_thorax_4dct_philips_itkelastix.nii.gz"]
# The larger real MR set (issues #28/#31), one split per subject: MS patients 01, 03 and 04 train,
# patient 12 stays out (lesion checks), as do every EPI (the real-noise benchmark's repeats), the
# second tumour patient and the ADI volunteer (other scanners' checks).
MR_EXTRA = ["nifti/mr_t1gd_tumour_pyradiomics_1.nii.gz", "nifti/mr_t1_mprage_child_siemens_sag_anon.nii.gz",
            "nifti/mr_t2_prostate_monai.nii.gz", "nifti/mr_ms_patient01_t1w.nii.gz", "nifti/mr_ms_patient01_t2w.nii.gz",
            "nifti/mr_ms_patient01_flair.nii.gz", "nifti/mr_ms_patient04_t1w.nii.gz", "nifti/mr_ms_patient04_t2w.nii.gz",
            "nifti/mr_ms_patient04_flair.nii.gz", "nifti/mr_ms_patient03_t2w.nii.gz", "nifti/mr_ms_patient03_flair.nii.gz"]
# the larger set's scans without the MS patients: the VAE is `denoise anomaly`'s default model, and
# the anomaly benchmark scores it on the MS patients' lesions, which it must not have learnt as normal
# (vae-mr-2d on all of MR_EXTRA denoised 1.3 / 0.7 dB better at Rician 5 / 9%, but its KL map found
# patient 12's lesions less well: docs/design.md, session 39)
MR_EXTRA_NON_MS = [f for f in MR_EXTRA if "_ms_" not in f]

MS_FLAIR_T2 = ["nifti/mr_ms_patient04_flair.nii.gz", "nifti/mr_flair_stroke_brainextracted_vrd.nii.gz",
               "nifti/mr_t2_stroke_clinical.nii.gz", "nifti/mr_ms_patient01_flair.nii.gz", "nifti/mr_ms_patient01_t2w.nii.gz",
               "nifti/mr_ms_patient03_flair.nii.gz", "nifti/mr_ms_patient03_t2w.nii.gz", "nifti/mr_ms_patient04_t2w.nii.gz"]
MR_NORM = Normalization(kind="percentile")
CT_NORM = Normalization(kind="window", low=-1000, high=1000)

# Each recipe is the run that ships (scripts/train_all.sh runs them in order): its architecture, its
# TrainConfig fields and its step count, so `train_pretrained.py --model NAME` alone trains what
# ships (`--print-config` shows the resolved configs); `experiment`: a measured run that does not ship. `grown_from`: the model starts from another
# run's weights (--init; denoise.models.grow), without which it is not shipped.
MR_DAE_TRAIN = dict(noise="rician:0.002-0.09", patch_size=64, normalization=MR_NORM, contrast_augment=0.5,
                    coarse_augment=0.3, val_scans=(1,))  # validated on the FLAIR (the recipe's second file)
RECIPES = {
    # FFDNet-style: pixel-unshuffle x2 (4x fewer FLOPs per pixel at the same width), noise-level
    # channel; 2.5D with two neighbouring slices each side. Three phases (issues #31, #28): the first
    # trains on MR_TRAIN from scratch (`--files MR_TRAIN --tail 0 --lesion-augment 0 --shift-consistency 0
    # --lr 2e-3 --steps 10000 --workers 0 --bf16`, 24-30 min); the second grows it a full-resolution
    # tail (zero output at the start) and fine-tunes on the larger real set with faint blobs in half
    # the patches and the one-pixel shift-consistency term (`--coarse-augment 0.3 --coarse-max 2
    # --coarse-kspace 0 --lesion-weight 0 --lr 5e-4 --steps 8000`, float32, ~70 min): the tail removes
    # the 2-pixel pattern, the blobs keep small lesions; this third one (~23 min) weighs the blobs'
    # pixels 101x in the loss and shows anatomy at 2-4x the pixel size, half of it cut from k-space
    # (the sinc blur and ringing of EPI/DWI matrices). Shipped told 0.9x the noise level it estimates
    # in tissue: keeps >= 0.9 of a 5 mm lesion at 5% contrast under Rician 5% with fg PSNR above
    # BM3D (issue #31 item 2; docs/design.md). ~2 h for the three phases, over issue #31's ~90 min.
    "mr-2d": dict(files=MR_TRAIN + MR_EXTRA, model=ModelConfig(kind="dae", spatial_dims=2, channels=(32, 64, 128), noise_channel=True,
                                                                shuffle=2, context=2, tail=16),
                  train=dict(MR_DAE_TRAIN, batch_size=32, lr=1e-4, lesion_augment=0.5, lesion_weight=100.0, shift_consistency=2.0,
                             coarse_augment=0.5, coarse_max=4, coarse_kspace=0.5, num_workers=1),
                  steps=2500, grown_from="its second phase (the options above)", inference={"noise_scale": 0.9}),
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
                  # and tells it 0.85x the noise level it estimates in tissue: keeps >= 0.9 of a 5 mm lesion at 5%
                  # contrast under Rician 5% (1: 0.88) with fg PSNR above BM3D (issue #31 item 2; docs/design.md
                  # "An operating point"; 0.8 with the mr-2d shipped before session 42)
                  inference={"isotropic_model": "mr-2d", "isotropic_noise_scale": 0.85}),
    "vae-mr-2d": dict(files=MR_TRAIN + MR_EXTRA_NON_MS, model=ModelConfig(kind="vae", spatial_dims=2, channels=(16, 32, 64),
                                                         latent_channels=16, residual=False),
                      train=dict(noise="rician:0.01-0.09", patch_size=64, batch_size=16, normalization=MR_NORM,
                                 beta=1e-3, beta_warmup_epochs=5), steps=3000),
    # trains in float32 (with --bf16 it lost 0.4-0.8 dB; the VAE did not)
    "sparse-mr-2d": dict(files=MR_TRAIN, model=ModelConfig(kind="sparse", spatial_dims=2, channels=(16, 32, 64),
                                                            latent_channels=32, residual=False),
                         train=dict(noise="rician:0.01-0.09", patch_size=64, batch_size=16, normalization=MR_NORM,
                                    sparsity_weight=1e-3), steps=3000),
    # an anomaly VAE (issue #25, an experiment, not shipped): a real bottleneck (five levels, 8 latent
    # channels at 1/16 of the resolution: 1/32 of the pixel count, where vae-mr-2d keeps as many latent
    # values as pixels), 128-pixel patches with almost no noise, on FLAIR and T2 only (the contrasts
    # the MS lesions are scored on): MS patients 01, 03, 04 and the stroke patient; patient 12 stays out
    "vae-anomaly-mr-2d": dict(files=MS_FLAIR_T2, model=ModelConfig(kind="vae", spatial_dims=2, channels=(16, 32, 64, 128, 128),
                                                                   latent_channels=8, residual=False, patch_size=128),
                              train=dict(noise="rician:0.002-0.01", patch_size=128, batch_size=16, normalization=MR_NORM,
                                         beta=1e-3, beta_warmup_epochs=5, val_scans=(0,)), steps=3000, experiment=True),
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
                        pseudo: list[tuple[str, float]] = (), clean: str | dict[str, str] | None = None) -> list[Scan]:
    """Read the training volumes; with ``halves`` each is split into two slabs along z (so a
    validation slab exists for every subject when there are only two subjects, as for CT). With
    ``clean`` ("nlm" or "bm3d", or a dict naming the method per file) each (named) volume is first
    denoised by that classical method, sigma estimated per slice, so that the targets lose the
    volumes' own noise (2-3% of the maximum for the clinical T1 and FLAIR; ~9 HU for the chest CT,
    which a low-dose -> full-dose model would otherwise learn to keep). MR results are clipped at 0."""
    from denoise.infer import denoise_scan
    from denoise.models import ClassicalDenoiser

    scans = []
    for rel in files:
        s = read_scan(data / rel)
        if "scct" in rel:
            s = s.with_array(cormack_to_hu(s.array))
        method = clean.get(rel) if isinstance(clean, dict) else clean
        if method:
            den = denoise_scan(s, ClassicalDenoiser(method)).array
            s = s.with_array(den if s.modality == "CT" else np.clip(den, 0.0, None))
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




def recipe_configs(name: str, *, model_changes: dict[str, Any] | None = None, train_changes: dict[str, Any] | None = None,
                   files: list[str] | None = None, extra_pseudo_ct: bool = False, steps: int | None = None,
                   take: str = "last", seed: int = 0) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """(model config, training config, the recipe with its files and pseudo-CT list resolved) of
    recipe ``name``, with ``model_changes`` (ModelConfig fields) and ``train_changes`` (TrainConfig
    fields) replacing the recipe's, ``files`` replacing its training files, ``steps`` its step count.
    ``take="best"`` stops early (patience 8 epochs); "last" runs the whole cosine schedule."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(sorted(RECIPES))}")
    recipe = dict(RECIPES[name])
    model = dataclasses.replace(recipe["model"], **(model_changes or {}))
    if files is not None:
        recipe["files"] = list(files)
    if extra_pseudo_ct:
        recipe["pseudo_ct"] = [*recipe.get("pseudo_ct", ()), *PSEUDO_CT_REMAPPED]
    steps = steps or recipe["steps"]
    train = TrainConfig(**{**recipe["train"], **(train_changes or {})}, epochs=EPOCHS, steps_per_epoch=max(4, steps // EPOCHS),
                        early_stop_patience=8 if take == "best" else EPOCHS, val_patches=48, seed=seed)
    return model, train, recipe


def train_recipe(name: str, data: str | Path, out: str | Path, *, init: str | Path | None = None, resume: bool = False,
                 clean_targets: str | dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train recipe ``name`` from the scans under ``data`` into the run folder ``out`` (checkpoints,
    history); returns the training history (`denoise.train.fit`). ``init``: start from this
    checkpoint's weights (the grown recipes need it to reproduce what ships); ``clean_targets``
    ("nlm" or "bm3d", or a dict per file): denoise those training volumes first (docs/design.md).
    Other keywords are `recipe_configs`'s. Ship a run with `ship`."""
    from denoise.train import fit

    model, train, recipe = recipe_configs(name, **kwargs)
    scans = load_training_scans(Path(data), recipe["files"], halves=recipe.get("halves", False),
                                pseudo=recipe.get("pseudo_ct", ()), clean=clean_targets)
    out = Path(out)
    last = out / "last.pt"
    summary = {"files": recipe["files"], "held_out": HELD_OUT,
               **({"targets_cleaned_with": clean_targets} if clean_targets else {}),
               **({"pseudo_ct": [f"{r} (slope {k:g} HU{f', remapped, seed {x[0]}' if x else ''})" for r, k, *x in recipe["pseudo_ct"]]}
                  if "pseudo_ct" in recipe else {})}
    return fit(model, train, scans, out, name=name, resume=last if resume and last.exists() else None, init=init,
               data_summary=summary)


def ship(src: Path, dest: Path, inference: dict | None = None) -> None:
    """Copy a checkpoint into the package with weights and config only (no optimiser state), and
    the recipe's ``inference`` settings (`denoise.infer.load_model`)."""
    net, info, _ = load_checkpoint(src)
    if inference:
        info["inference"] = inference
    save_checkpoint(dest, net, info)


