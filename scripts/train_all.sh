#!/usr/bin/env bash
# Train every shipped model in sequence (about 60 minutes on 2 CPU cores).
# Step times are given (measured on an idle 2-core machine, plus margin) so that the step budget
# does not depend on what else the machine is doing.
#   nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
python scripts/train_pretrained.py --model mr-2d --minutes 22 --seconds-per-step 0.8
python scripts/train_pretrained.py --model mr-3d --minutes 13 --seconds-per-step 0.8
python scripts/train_pretrained.py --model vae-mr-2d --minutes 4 --seconds-per-step 0.4
python scripts/train_pretrained.py --model sparse-mr-2d --minutes 4 --seconds-per-step 0.4
python scripts/train_pretrained.py --model ct-2d --minutes 12 --seconds-per-step 0.8
