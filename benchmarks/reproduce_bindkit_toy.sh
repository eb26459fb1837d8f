#!/usr/bin/env bash
# Reproduce bindkit_toy (weights/bindkit_toy) from scratch and print its metrics table, with wall times.
#   bash benchmarks/reproduce_bindkit_toy.sh [WORKDIR]      (default WORKDIR: ./toy_run; needs ~600 MB of disk)
# 2 CPU cores: about 35 min in all (see docs/bindkit_toy.md). Every step is `bindkit` CLI, as a user runs it.
set -euo pipefail
W=${1:-toy_run}
BK=${BINDKIT:-bindkit}
mkdir -p "$W"
t() { local s=$SECONDS; "$@"; echo "[$(( SECONDS - s )) s] $*" >&2; }
# 1. the synthetic world: 4,000 training scenes (+ 400 test, 400 compositional), seed 0
[ -f "$W/world/world.json" ] || t $BK datasets synthetic --out "$W/world" --n 4000 --n-test 400 --seed 0 --workers 2 -q
# 2. an image-text space from scratch (CLIP-style): the world's varied captions and the attribute captions (which name
#    every attribute by its class name), one pair type per batch, losses summed
#    8 epochs, then 30 more from there (a warm restart of the schedule), as bindkit_toy was trained
t $BK train "$W/world/image_text.csv" "$W/world/image_attributes.csv" --card bindkit_small --out "$W/m1" --epochs 8 \
  --batch-size 128 --lr 1e-3 --seed 0 -q
t $BK train "$W/world/image_text.csv" "$W/world/image_attributes.csv" --init "$W/m1" --out "$W/m1b" --epochs 30 \
  --batch-size 128 --lr 1e-3 --seed 0 -q
# 3. audio, depth, thermal and IMU bound through images only; image and text frozen (cached once)
t $BK train "$W/world/image_audio.csv" "$W/world/image_depth.csv" "$W/world/image_thermal.csv" "$W/world/image_imu.csv" \
  --init "$W/m1b" --freeze image,text --out "$W/bindkit_toy_fp32" --name bindkit_toy --epochs 20 --batch-size 128 \
  --lr 2e-3 --seed 0 -q
# 4. fp16 storage (what is committed: <= 20 MB), its card and training record
t python "$(dirname "$0")/finalize_bindkit_toy.py" "$W/bindkit_toy_fp32" --out "$W/bindkit_toy" --encoders "$W"
# 5. the metrics table on the held-out splits
t python "$(dirname "$0")/eval_toy.py" "$W/world" --model "$W/bindkit_toy"
