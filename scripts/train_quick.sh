#!/usr/bin/env bash
# Every shipped model retrained from the real scans in ../shared/data in at most ~30 minutes each on
# a 2-core CPU: one run per model (two for ct-2d), two threads, bfloat16 autocast (--bf16, TrainConfig.cpu_bf16:
# ~1.5x the steps per second on a CPU with AVX512-BF16 or AMX; drop --bf16 elsewhere and expect
# ~1.5x the time). Nothing is shipped: the checkpoints land in runs/quick/<model>/last.pt and
#   python scripts/quick_check.py
# scores them beside the shipped models on the held-out scans (docs/benchmarks/quick/summary.md).
# The shipped MR models come from scripts/train_all.sh (many phases, ~12 h on 2 cores plus GPU
# phases); the shipped ct-2d is this script's (train_all.sh runs the same two commands and ships).
#   nohup bash scripts/train_quick.sh > runs/train_quick.log 2>&1 &
# Step counts are fixed, so the result does not depend on machine speed; the minutes in the
# comments are wall time measured on the 2-core development machine (AMD EPYC with AVX512-BF16).
# Tried and not used (held-out scans, `python scripts/quick_check.py --runs DIR --out DIR/check`):
# ct-2d in one phase of 16000 steps (context and reference noise from the start) in float32 instead of bf16 (27 min): 40.29/38.04 dB at 25/10% dose, bf16 40.39/38.08;
# the L1 loss (--loss l1, otherwise these commands; ct-2d in one phase, one thread each side by side): mr-2d 31.07/28.57 dB
# at Rician 5/9% (MSE 31.21/28.63), ct-2d 36.74/34.37 (the median of targets that keep full-dose noise
# is not their mean: MSE it is). mr-2d in two phases like ct-2d's (5000 steps with one neighbouring slice
# and no contrast/coarse augmentation, then grown to two with them, 5000 steps at lr 3e-4; 10000 in all, as here):
# 31.06/28.45 dB at Rician 5/9% on the three-slab check (`python scripts/planes_check.py CKPT`, axial;
# this script's mr-2d 31.22/28.64): the curriculum that pays for CT does not for MR. mr-2d with
# --ema 0.999 (a moving average of the weights): 31.19/28.57, nothing over the cosine schedule's end.
# Promising, not yet adopted (quick_check and the mr-3d grown from it not rerun): mr-2d at --lr 2e-3
# (this command otherwise; 30 min measured): 31.31/28.74 dB axial, 31.63/29.08 along three planes on
# the three-slab check, against 31.22/28.64 and 31.46/28.86 at the default 1e-3 and the shipped
# mr-2d's 31.37/28.76 and 31.66/29.07.
# A third ct-2d phase (the second's command, 4000 steps at lr 1e-4 from its end): held-out
# GE CT 43.09/40.83/38.12 dB at 50/25/10% dose against 43.05/40.83/38.13, saturated.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/quick
F32="python scripts/train_pretrained.py --threads 2 --no-ship --take last"
Q="$F32 --bf16"
MR="--contrast-augment 0.5 --coarse-augment 0.3 --noise rician:0.002-0.09 --val-scans 1"
# mr-2d: two neighbouring slices each side from the start, batch 32 (24.5 min)
$Q --model mr-2d --context 2 --steps 10000 --batch-size 32 $MR --run-name quick/mr-2d > runs/quick/mr-2d.log 2>&1
# mr-3d's slab network grown from the mr-2d above, half of its patches with slices 2-3 apart
# (on near-isotropic volumes mr-3d is mr-2d along three planes; 24.8 min)
$Q --model mr-3d --init runs/quick/mr-2d/last.pt --steps 4000 --lr 1e-4 --thick-augment 0.5 $MR --run-name quick/mr-3d > runs/quick/mr-3d.log 2>&1
# ct-2d in two phases (26.5 min in all when measured, 11 of them preparing the pseudo-CT volumes and
# their noise fields, once per phase; the noise fields now take 164 s instead of 336 s per phase on
# threads, `python scripts/bench_train_step.py lowdose`, so ~21 min): single slices with noise-free targets, then grown to one neighbouring slice
# each side (zero weights) with full-dose targets keeping 0-25 HU of their own noise. Held-out GE CT
# 40.83/38.13 dB at 25/10% dose (the 5-phase ct-2d shipped before it 40.71/38.03, BM3D oracle 40.63/37.73); one phase of 16000 steps
# with both from the start reached only 40.24-40.39/37.70-38.08 (bf16 or float32, seed 0 or 1)
$Q --model ct-2d --steps 6000 --run-name quick/ct-2d-a > runs/quick/ct-2d-a.log 2>&1
$Q --model ct-2d --context 1 --steps 8000 --init runs/quick/ct-2d-a/last.pt --lr 3e-4 --reference-noise 0.0125 --run-name quick/ct-2d > runs/quick/ct-2d.log 2>&1
# the comparison VAE and sparse AE, their recipes as shipped (4.4 and 4.9 min). The sparse AE in
# float32: with --bf16 it ended 0.4-0.7 dB lower on the held-out T1 (26.30/25.13 dB at 5/9%, float32
# 27.11/25.54, the shipped one 27.03/25.54; scripts/planes_check.py), while the VAE was level
$Q --model vae-mr-2d --steps 3000 --run-name quick/vae-mr-2d > runs/quick/vae-mr-2d.log 2>&1
$F32 --model sparse-mr-2d --steps 3000 --run-name quick/sparse-mr-2d > runs/quick/sparse-mr-2d.log 2>&1
