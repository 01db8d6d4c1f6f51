#!/usr/bin/env bash
# Train every shipped model in sequence (about 65 minutes on 2 otherwise idle CPU cores).
#   nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
python scripts/train_pretrained.py --model ct-2d --minutes 12
python scripts/train_pretrained.py --model mr-2d --minutes 22
python scripts/train_pretrained.py --model mr-3d --minutes 13
python scripts/train_pretrained.py --model vae-mr-2d --minutes 4
python scripts/train_pretrained.py --model sparse-mr-2d --minutes 4
