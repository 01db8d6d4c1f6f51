#!/usr/bin/env bash
# Train every shipped model in sequence (about 75 minutes on 2 otherwise idle CPU cores).
#   nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
python scripts/train_pretrained.py --model mr-2d --minutes 28
python scripts/train_pretrained.py --model ct-2d --minutes 12
python scripts/train_pretrained.py --model mr-3d --minutes 15
python scripts/train_pretrained.py --model vae-mr-2d --minutes 5
python scripts/train_pretrained.py --model sparse-mr-2d --minutes 5
