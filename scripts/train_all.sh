#!/usr/bin/env bash
# Train every shipped model on a 2-core CPU: two single-thread runs side by side (better use of
# 2 cores than one 2-thread run), about 2 hours in all. Step counts are fixed so the
# result does not depend on machine load.
#   nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
export OMP_NUM_THREADS=1
python scripts/train_pretrained.py --model mr-2d --steps 9000 --threads 1 > runs/mr-2d.log 2>&1 &
python scripts/train_pretrained.py --model mr-3d --steps 3000 --threads 1 > runs/mr-3d.log 2>&1 &
wait
# mr-2d phase 2: fine-tune from phase 1 at a lower learning rate, a full cosine schedule to zero,
# shipping the final weights (the validation scan, a resampled T2, plateaus early and is a poor guide)
cp denoise/pretrained/mr-2d.pt runs/mr-2d-phase1.pt
python scripts/train_pretrained.py --model mr-2d --steps 4000 --threads 1 --init runs/mr-2d-phase1.pt --lr 3e-4 \
    --take last --run-name mr-2d-ft > runs/mr-2d-ft.log 2>&1 &
python scripts/train_pretrained.py --model ct-2d --steps 4000 --threads 1 > runs/ct-2d.log 2>&1
wait
python scripts/train_pretrained.py --model vae-mr-2d --steps 3000 --threads 1 > runs/vae-mr-2d.log 2>&1 &
python scripts/train_pretrained.py --model sparse-mr-2d --steps 3000 --threads 1 > runs/sparse-mr-2d.log 2>&1
wait
python scripts/write_model_cards.py
