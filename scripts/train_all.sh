#!/usr/bin/env bash
# Train every shipped model from the real scans in ../shared/data and ship it into
# denoise/pretrained/ (then regenerate the model cards): one run per model (two for ct-2d, three for mr-2d),
# each at most ~30 minutes on a 2-core CPU (two threads) but mr-2d's second phase (~65 minutes; issue
# #31 allows 90; its three phases ~2 h), about 3.5 hours in all.
#   nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
#   bash scripts/train_all.sh --no-ship    # retrain into runs/quick/ only, then compare with what ships:
#   python scripts/quick_check.py          # held-out scans, shipped vs runs/quick (runs/quick/check/)
# Step counts are fixed, so the result does not depend on machine speed; the minutes below are wall
# time measured on the 2-core development machine (AMD EPYC with AVX512-BF16). --bf16 is bfloat16
# autocast (TrainConfig.cpu_bf16): ~1.5x the steps per second on a CPU with AVX512-BF16 or AMX; drop
# it elsewhere and expect ~1.5x the time. Held-out numbers: docs/benchmarks.md (scripts/benchmark.py).
#
# Until session 15 the MR models came from a 12-phase recipe (~12 h on 2 CPU cores plus four GPU
# phases; `git show 78a162e:scripts/train_all.sh` has it with its measurements). This one reaches
# the same held-out T1 quality (three slabs, Rician 5/9%, fg PSNR: mr-2d 31.30/28.74 dB against
# 31.35/28.75, along three planes 31.63/29.07 against 31.64/29.06, mr-3d's slab network
# 31.37/28.80 against 31.35/28.74) and is up to 0.36 dB behind on the other scanners' series
# (docs/design.md, "One recipe of at most 30 minutes per model").
# Tried and not used (held-out scans; `python scripts/planes_check.py CKPT` for an mr-2d, `python
# scripts/quick_check.py --runs DIR --out DIR/check` for a run folder):
# - mr-2d at the default lr 1e-3: 31.22/28.64 dB axial, 31.46/28.86 along three planes (lr 2e-3:
#   31.31/28.74, 31.63/29.08); lr 3e-3: validation 0.6-0.8 dB behind lr 2e-3 through epoch 7 of 25, stopped.
# - mr-3d at lr 2e-4: slab network 31.39/28.82 on the T1 (1e-4: 31.37/28.80), other scanners level
#   but the Siemens slab -0.13 dB at 5%.
# - mr-2d in two phases like ct-2d's (5000 steps with one neighbouring slice and no contrast/coarse
#   augmentation, then grown to two with them, 5000 at lr 3e-4): 31.06/28.45 (lr 1e-3 one-phase 31.22/28.64).
# - mr-2d with --ema 0.999: 31.19/28.57 (same one-phase recipe at lr 1e-3: 31.22/28.64).
# - the L1 loss (--loss l1): mr-2d 31.07/28.57 (MSE 31.21/28.63); ct-2d 36.74/34.37 (the median of
#   targets that keep full-dose noise is not their mean).
# - ct-2d in one phase of 16000 steps (context and reference noise from the start): 40.24-40.39/
#   37.70-38.08 dB at 25/10% dose (bf16 or float32, seed 0 or 1) against the two phases' 40.83/38.13.
# - a third ct-2d phase (the second's command, 4000 steps at lr 1e-4 from its end): held-out GE CT
#   43.09/40.83/38.12 dB at 50/25/10% dose against 43.05/40.83/38.13, saturated.
# - the sparse AE with --bf16: 26.30/25.13 dB at 5/9% on the held-out T1 (float32 27.11/25.54): it
#   trains in float32 (the VAE was level with bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
SHIP=""
if [[ "${1:-}" == "--no-ship" ]]; then SHIP="--no-ship"; fi
mkdir -p runs/quick
F32="python scripts/train_pretrained.py --threads 2 $SHIP"
Q="$F32 --bf16"
# Each model's settings are its recipe in train_pretrained.py (RECIPES; `--print-config` shows them).
# mr-2d in three phases: two neighbouring slices each side, batch 32, lr 2e-3, 10000 steps on the four
# first volumes (24-30 min), then grown a full-resolution tail and fine-tuned on the larger real set
# with faint blobs and the shift-consistency term, 8000 steps in float32 with one batch worker
# (63 min; issue #31: the 2-pixel pattern on nearly noise-free scans fell from up to 1.8x the
# input's to at most 1.09x, held-out T1 +0.09/+0.04 dB at Rician 5/9%), then the recipe: the
# blobs weighed 101x in the loss and anatomy at 2-4x the pixel size, half of it cut from k-space,
# 2500 steps at lr 1e-4 (23 min; shipped told 0.9x its noise estimate: 5 mm 5% lesion kept 0.90 /
# 0.83 at Rician 5 / 9% for 31.10 / 28.48 dB, BM3D oracle 31.04 / 27.99; docs/design.md)
$Q --model mr-2d --files MR_TRAIN --tail 0 --lesion-augment 0 --shift-consistency 0 --lr 2e-3 --steps 10000 --workers 0 \
   --coarse-augment 0.3 --coarse-max 2 --coarse-kspace 0 --lesion-weight 0 --no-ship --run-name quick/mr-2d-a > runs/quick/mr-2d-a.log 2>&1
$F32 --model mr-2d --threads 1 --init runs/quick/mr-2d-a/last.pt --coarse-augment 0.3 --coarse-max 2 --coarse-kspace 0 \
   --lesion-weight 0 --lr 5e-4 --steps 8000 --no-ship --run-name quick/mr-2d-b > runs/quick/mr-2d-b.log 2>&1
$F32 --model mr-2d --init runs/quick/mr-2d-b/last.pt --run-name quick/mr-2d > runs/quick/mr-2d.log 2>&1
# mr-3d's slab network grown from mr-2d's first phase, half of its patches with slices 2-3 apart
# (near-isotropic volumes go to mr-2d along the three planes instead; 4000 steps, 25-29 min)
$Q --model mr-3d --init runs/quick/mr-2d-a/last.pt --run-name quick/mr-3d > runs/quick/mr-3d.log 2>&1
# ct-2d in two phases (26.5 min in all when measured, 11 of them preparing the pseudo-CT volumes and
# their noise fields, once per phase; the noise fields now take 164 s instead of 336 s per phase on
# threads, `python scripts/bench_train_step.py lowdose`, so ~21 min): single slices with noise-free
# targets (6000 steps), then the recipe: grown to one neighbouring slice each side (zero weights)
# with full-dose targets keeping 0-25 HU of their own noise (8000 steps). Held-out GE CT 40.83/38.13
# dB at 25/10% dose (BM3D with oracle sigma 40.63/37.73; the 5-phase ct-2d shipped until session 14:
# 40.71/38.03)
$Q --model ct-2d --context 0 --lr 1e-3 --reference-noise 0 --steps 6000 --no-ship --run-name quick/ct-2d-a > runs/quick/ct-2d-a.log 2>&1
$Q --model ct-2d --init runs/quick/ct-2d-a/last.pt --run-name quick/ct-2d > runs/quick/ct-2d.log 2>&1
# the comparison VAE and sparse AE (float32; 3000 steps, ~7 and 4.1 min); the VAE on MR_TRAIN and
# the larger set without the MS patients since session 39 (recipes.MR_EXTRA_NON_MS)
$F32 --model vae-mr-2d --run-name quick/vae-mr-2d > runs/quick/vae-mr-2d.log 2>&1
$F32 --model sparse-mr-2d --run-name quick/sparse-mr-2d > runs/quick/sparse-mr-2d.log 2>&1
# the cards read docs/benchmarks/: after shipping, rerun the benchmark first for current numbers
# (python scripts/benchmark.py --reuse-classical; then write_model_cards.py, write_benchmarks_doc.py)
if [[ -z "$SHIP" ]]; then python scripts/write_model_cards.py; fi
