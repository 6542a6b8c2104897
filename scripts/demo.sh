#!/usr/bin/env bash
# The README's first command: set everything up, then run a short but complete lottery-ticket study on
# the built-in synthetic deepfakes (no download) at 72x72 (Meso-4's last block is then 3x3, enough for a
# readable Grad-CAM): train Meso-4 dense, two IMP rounds (50%, 80% of the weights pruned, rewinding to
# theta_0), a one-shot baseline and both random controls at 80%, Grad-CAM across levels, and the report.
# About 2-3 minutes on a 2-core CPU through lavapipe.
# Re-running resumes/skips what is done. Usage: bash scripts/demo.sh [run-folder]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
run=${1:-runs/demo-meso4-synthetic}
tl() { node bin/ticketlab.mjs "$@"; }
echo "demo: ticketlab info"
tl info
echo "demo: IMP on synthetic deepfakes -> $run"
tl imp --model meso4 --data synthetic:train=1000,val=200,test=200 --size 72 --epochs 3 --batch 32 --lr 1e-3 \
  --sparsities 0.5,0.8 --scope global --rewind init --oneshot 2 --controls reinit,random_prune \
  --out "$run" --resume
echo "demo: Grad-CAM across levels"
tl gradcam --run "$run" --levels 0,1,2 --images synthetic --n 8
echo "demo: report"
tl report "$run"
echo
echo "demo: done. Open $run/report.html; tables in $run/summary.csv; weights and masks (.safetensors) in $run/level_*/"
