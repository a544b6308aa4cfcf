#!/usr/bin/env bash
# Reproduces the whole leaderboard in one command: train the learned agents, benchmark every
# standard config x split x agent, then validate (replay every row, check the manifest).
#
#   scripts/reproduce_leaderboard.sh --out DIR [--backend local|ray] [--seeds "0 1 2 3 4"]
#       [--jobs N] [--configs "ID ..."] [--no-train] [--dry-run] [-- BENCHMARK-OPTIONS...]
#
# Resumable: rerun the same command after an interruption. Training skips every
# DIR/checkpoints/<EnvName>/seed<k>/model.zip that exists and resumes a started run from its
# latest checkpoint (scripts/train_leaderboard.py); the benchmark skips every episode already in
# DIR/results.csv (append-only, locked), so only the missing cells run.
#
# --backend ray runs the benchmark's cells as Ray tasks (needs .venv-ray: scripts/setup_ray.sh;
# its python is then used unless PYTHON is set); training runs as --jobs local processes (one
# per training seed, one torch thread each) with either backend.
#
# Wall time on the 2-core reference machine: see docs/leaderboard.md ("Reproducing"): an
# estimate from measured per-episode and per-training-run times, not a timed full run.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=""
BACKEND=local
SEEDS="0 1 2 3 4"
JOBS=2
CONFIGS=""
TRAIN=1
DRY=0
EXTRA=()
die() { echo "reproduce_leaderboard: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift 2 ;;
    --backend) [ $# -ge 2 ] || die "--backend needs local or ray"; BACKEND=$2; shift 2 ;;
    --seeds) [ $# -ge 2 ] || die "--seeds needs a list, e.g. \"0 1 2 3 4\""; SEEDS=$2; shift 2 ;;
    --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift 2 ;;
    --configs) [ $# -ge 2 ] || die "--configs needs env ids"; CONFIGS=$2; shift 2 ;;
    --no-train) TRAIN=0; shift ;;
    --dry-run) DRY=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$OUT" ] || die "--out DIR is required"
case "$BACKEND" in local|ray) ;; *) die "--backend: expected local or ray (got '$BACKEND')" ;; esac
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs: expected a positive integer (got '$JOBS')"
for s in $SEEDS; do [[ "$s" =~ ^[0-9]+$ ]] || die "--seeds: expected non-negative integers (got '$s')"; done

if [ -z "${PYTHON:-}" ]; then
  if [ "$BACKEND" = ray ]; then PYTHON=.venv-ray/bin/python; else PYTHON=.venv/bin/python; fi
fi
[ "$DRY" = 1 ] || [ -x "$PYTHON" ] || die "no python at '$PYTHON' (run scripts/setup.sh, or scripts/setup_ray.sh for --backend ray)"

run() { echo "+ $*" >&2; if [ "$DRY" = 0 ]; then "$@"; fi; }
CFG_ARGS=()
if [ -n "$CONFIGS" ]; then read -r -a CFG_ARGS <<< "$CONFIGS"; fi
run mkdir -p "$OUT"

if [ "$TRAIN" = 1 ]; then
  # One process per training seed, at most JOBS at a time; each skips/resumes its own runs.
  pids=()
  for s in $SEEDS; do
    while [ "$DRY" = 0 ] && [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 5; done
    train=("$PYTHON" scripts/train_leaderboard.py --seeds "$s" --dest "$OUT/checkpoints"
           --work "$OUT/runs" --log "$OUT/train_timings.jsonl")
    if [ ${#CFG_ARGS[@]} -gt 0 ]; then train+=(--configs "${CFG_ARGS[@]}"); fi
    echo "+ ${train[*]} > $OUT/train_seed$s.log 2>&1 &" >&2
    if [ "$DRY" = 0 ]; then "${train[@]}" > "$OUT/train_seed$s.log" 2>&1 & pids+=($!); fi
  done
  for p in "${pids[@]}"; do wait "$p" || die "training failed (see $OUT/train_seed*.log)"; done
  AGENTS=(heuristics "sb3:maskable_ppo=$OUT/checkpoints")
else
  AGENTS=(heuristics)
fi

bench=("$PYTHON" -m disagg_gym.cli benchmark --out "$OUT" --agents "${AGENTS[@]}" --backend "$BACKEND")
if [ ${#CFG_ARGS[@]} -gt 0 ]; then bench+=(--configs "${CFG_ARGS[@]}"); fi
run "${bench[@]}" "${EXTRA[@]}"
run "$PYTHON" -m disagg_gym.cli validate "$OUT/results.csv"
