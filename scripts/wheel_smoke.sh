#!/usr/bin/env bash
# Build the wheel, install it (not editable) into a fresh venv outside the checkout, and smoke-test
# what a user of the installed package runs: `denoise models`, `denoise run` on a copied sample
# folder, and `denoise view` answering Streamlit's health endpoint. Used by .ci/run.
#   bash scripts/wheel_smoke.sh            (from the repository root; ~2 minutes)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
# (kill only a viewer that was started: `kill 0` would signal this whole process group)
trap 'if [ -n "${viewer:-}" ]; then kill "$viewer" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
# build from a clean copy of the tracked files (setuptools leaves build/ beside the sources it builds)
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | (mkdir -p "$tmp/src" && tar -xf - -C "$tmp/src")
python -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$tmp/src" >/dev/null
python -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q torch==2.13.0 "$(ls "$tmp"/dist/denoise-*.whl)[app]"
cd "$tmp"  # nothing of the checkout on the path: everything comes from the wheel
"$tmp/venv/bin/python" -c "import denoise, sys; assert '$repo' not in denoise.__file__, denoise.__file__"
"$tmp/venv/bin/denoise" models > "$tmp/models.txt"  # (not piped into grep -q, which closes the pipe early)
grep -q "^mr-2d" "$tmp/models.txt"
mkdir in && cp -r "$repo/sample_data/mr_dwi_b0_dicom" "$repo/sample_data/phantom_shepp_logan_2d.nii.gz" in/
"$tmp/venv/bin/denoise" run -i in -o out --quiet
grep -c ",ok," out/manifest.csv | grep -qx 2
port=$(( 20000 + RANDOM % 20000 ))
"$tmp/venv/bin/denoise" view --port "$port" >"$tmp/view.log" 2>&1 &
viewer=$!
for _ in $(seq 60); do
  if curl -fs "http://127.0.0.1:$port/_stcore/health" 2>/dev/null | grep -q ok; then
    echo "wheel smoke test passed: models, run, view (health ok)"
    exit 0
  fi
  sleep 1
done
cat "$tmp/view.log"
echo "wheel smoke test failed: the viewer did not answer its health endpoint" >&2
exit 1
