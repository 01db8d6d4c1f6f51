#!/usr/bin/env bash
# Outputs that a behaviour-preserving change must leave identical (issue #24's proof), from one tree:
#   git worktree add /tmp/before HEAD                      # the tree before the change
#   bash scripts/refactor_check.sh /tmp/before /tmp/proof/before
#   bash scripts/refactor_check.sh . /tmp/proof/after
#   python scripts/refactor_compare.py /tmp/proof/before /tmp/proof/after   # lists differences, exit 1 if any
# Runs TREE's own sources (python -c from TREE, so its denoise/ is imported, whatever is installed):
# `denoise run` on sample_data in seven configurations, `denoise bench` on the sample T1 (noisy, NLM,
# the five shipped models) and two short epochs of `denoise train` for each model kind. ~6 min on 2 cores.
set -euo pipefail
TREE=$(cd "$1" && pwd); OUT=$(mkdir -p "$2" && cd "$2" && pwd)
SAMPLE="$TREE/sample_data"
cd "$TREE"
D() { python -c 'import sys; from denoise.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
D run -i "$SAMPLE" -o "$OUT/default" --quiet > "$OUT/default.log" 2>&1
for m in mr-3d vae-mr-2d sparse-mr-2d cae-mr-2d; do D run -i "$SAMPLE" -o "$OUT/$m" -m $m --quiet > "$OUT/$m.log" 2>&1; done
D run -i "$SAMPLE" -o "$OUT/mr3d1" -m mr-3d --planes 1 --quiet > "$OUT/mr3d1.log" 2>&1
D run -i "$SAMPLE" -o "$OUT/tta" -m mr-2d --tta --uncertainty --quiet > "$OUT/tta.log" 2>&1
D bench --data "$SAMPLE/mr_t1_brain_slab.nii.gz" --noise rician:0.05 --max-slices 6 --out "$OUT/bench" \
  --methods noisy,nlm,mr-2d,mr-3d,vae-mr-2d,cae-mr-2d,sparse-mr-2d > "$OUT/bench.log" 2>&1
mkdir -p "$OUT/traindata"
cp "$SAMPLE/mr_t1_brain_slab.nii.gz" "$SAMPLE/phantom_shepp_logan_2d.nii.gz" "$OUT/traindata/"
for k in dae vae sparse cae linear; do
  case $k in
    dae) extra=$'  noise_channel: true\n  shuffle: 2\n  tail: 8'; shift=1.0 ;;
    linear) extra='  patch_size: 8'; shift=0.0 ;;
    *) extra=''; shift=0.0 ;;
  esac
  printf 'model:\n  kind: %s\n  channels: [8, 16]\n%s\ntrain:\n  patch_size: 32\n  batch_size: 4\n  val_patches: 4\n  shift_consistency: %s\n  lesion_augment: 0.5\n  beta: 0.01\n  sparsity_weight: 0.01\n  contractive_weight: 0.01\n  amp: false\n' \
    "$k" "$extra" "$shift" > "$OUT/$k.yaml"
  D train --data "$OUT/traindata" --model $k --dims 2 --config "$OUT/$k.yaml" --epochs 2 --steps-per-epoch 4 \
    --out "$OUT/train-$k" --device cpu --quiet > "$OUT/train-$k.log" 2>&1
done
echo "done: $OUT"
