#!/usr/bin/env bash
# Reproduces the whole leaderboard in one command: tune the parametrised baselines on validation
# seeds, train the learned agents (and the two SmallRoute ablations), benchmark every standard
# config x split x agent, then validate (check the manifest; replay sampled rows, or every row).
#
#   scripts/reproduce_leaderboard.sh --out DIR [--backend local|ray] [--seeds "0 1 2 3 4"]
#       [--jobs N] [--configs "ID ..."] [--no-train] [--no-tune] [--validate-sample N|all]
#       [--dry-run] [-- BENCHMARK-OPTIONS...]
#
# Tuning re-runs every search of the committed leaderboard/tuned.yaml (same config, policy,
# metric and validation seeds) into DIR/tuned.yaml, which the benchmark then binds (--tuned);
# --no-tune benchmarks with the committed leaderboard/tuned.yaml instead.
# Agents: every applicable heuristic, the admission compositions jsq+ttft_guard,
# least_finish+ttft_guard and jsq+queue_guard, MaskablePPO (DIR/checkpoints) and, on
# SmallRoute-v3, the ablations maskable_ppo_noprior and maskable_ppo_noreject (the latter
# benchmarked with the env.allow_reject=false it was trained with).
#
# Resumable: rerun the same command after an interruption. Training skips every
# DIR/checkpoints/<EnvName>/seed<k>/model.zip that exists and resumes a started run from its
# latest checkpoint (scripts/train_leaderboard.py); tuning skips every search already in
# DIR/tuned.yaml (an entry is written when its search ends); the bounds already in
# DIR/bounds_cache.json are kept; the benchmark skips every episode already in DIR/results.csv
# (append-only, locked), so only the missing cells run.
#
# Local backend: two pools of --jobs processes, each starting its costliest units first
# (disagg_gym_agents/leaderboard/reproduce.py). Pool 1: training (one process per training seed,
# then one per ablation), the tuning searches (one process each, writing DIR/tuned.yaml under a
# lock) and the bounds (one process per config, into DIR/bounds_cache.json), which do not depend
# on each other. Pool 2: the benchmark, one process per (config, split), then the compositions
# tuned for some configs only and the no-reject ablation (they share DIR/results.csv safely).
# Then one last benchmark call writes LEADERBOARD.md and the plots, and validate checks every
# config in --jobs processes: the manifest (no cell missing) and a replay of --validate-sample
# rows per config (default 10, drawn with validate's fixed --sample-seed 0: a determinism check
# of the fresh rows); --validate-sample all replays every row, which costs as much CPU as the
# benchmark again. --backend ray runs the benchmark's cells as Ray tasks instead
# (needs .venv-ray: scripts/setup_ray.sh; its python is then used unless PYTHON is set).
#
# Compare the result with the committed leaderboard: scripts/compare_reproduction.py DIR.
# Each stage's wall time is printed and appended to DIR/timings.log.
#
# Wall time on the 2-core reference machine: 7.0 h, timed end to end with default options
# (docs/leaderboard.md, "Reproducing"): training, tuning and bounds 2.9 h, benchmark 3.9 h,
# tables and validate 8 minutes; every row, search, bound and checkpoint equal to the committed.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=""
BACKEND=local
SEEDS="0 1 2 3 4"
JOBS=2
CONFIGS=""
CONFIGS_SET=""
TRAIN=1
TUNE=1
DRY=0
VSAMPLE=10
EXTRA=()
die() { echo "reproduce_leaderboard: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift 2 ;;
    --backend) [ $# -ge 2 ] || die "--backend needs local or ray"; BACKEND=$2; shift 2 ;;
    --seeds) [ $# -ge 2 ] || die "--seeds needs a list, e.g. \"0 1 2 3 4\""; SEEDS=$2; shift 2 ;;
    --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift 2 ;;
    --configs) [ $# -ge 2 ] || die "--configs needs env ids"; CONFIGS=$2; CONFIGS_SET=1; shift 2 ;;
    --no-train) TRAIN=0; shift ;;
    --no-tune) TUNE=0; shift ;;
    --validate-sample) [ $# -ge 2 ] || die "--validate-sample needs a number of rows or 'all'"; VSAMPLE=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$OUT" ] || die "--out DIR is required"
[ ! -e "$OUT" ] || [ -d "$OUT" ] || die "--out '$OUT': is a file, expected a folder"
case "$BACKEND" in local|ray) ;; *) die "--backend: expected local or ray (got '$BACKEND')" ;; esac
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs: expected a positive integer (got '$JOBS')"
[[ "$VSAMPLE" == all || "$VSAMPLE" =~ ^[1-9][0-9]*$ ]] || die "--validate-sample: expected a positive integer or 'all' (got '$VSAMPLE')"
for s in $SEEDS; do [[ "$s" =~ ^[0-9]+$ ]] || die "--seeds: expected non-negative integers (got '$s')"; done
[ -n "${SEEDS//[[:space:]]/}" ] || die "--seeds: expected at least one seed (got '$SEEDS')"
[ -z "$CONFIGS_SET" ] || [ -n "${CONFIGS//[[:space:]]/}" ] || die "--configs: expected at least one env id (got '$CONFIGS')"

if [ -z "${PYTHON:-}" ]; then
  if [ "$BACKEND" = ray ]; then PYTHON=.venv-ray/bin/python; else PYTHON=.venv/bin/python; fi
fi
[ -x "$PYTHON" ] || die "no python at '$PYTHON' (run scripts/setup.sh, or scripts/setup_ray.sh for --backend ray)"

run() { echo "+ $*" >&2; if [ "$DRY" = 0 ]; then "$@"; fi; }
CFG_ARGS=()
if [ -n "$CONFIGS" ]; then
  read -r -a CFG_ARGS <<< "$CONFIGS"
  # config names (small-route) name their current ids, as everywhere in disagg-gym
  ids=$("$PYTHON" -c 'import sys
from disagg_gym.cli import canonical_env_ids
from disagg_gym.errors import UserError
try:
    print(*canonical_env_ids(sys.argv[1:]))
except UserError as exc:
    print(f"reproduce_leaderboard: --configs: {exc}", file=sys.stderr)
    raise SystemExit(2)' "${CFG_ARGS[@]}") || exit $?
  read -r -a CFG_ARGS <<< "$ids"
fi
# Benchmark options after -- are parsed now, not hours later when the benchmark starts.
if [ ${#EXTRA[@]} -gt 0 ]; then
  REPRO_BACKEND="$BACKEND" "$PYTHON" -c 'import argparse, sys
from disagg_gym_agents.leaderboard import add_benchmark_args
p = argparse.ArgumentParser()
add_benchmark_args(p)
def error(msg):
    print(f"reproduce_leaderboard: benchmark options after --: {msg}", file=sys.stderr)
    raise SystemExit(2)
p.error = error
from disagg_gym.cli import empty_value_option
flag = empty_value_option(p, sys.argv[1:])
if flag is not None:
    error(f"argument {flag}: empty value (an unset shell variable?)")
ns = p.parse_args(["--out", ".", *sys.argv[1:]])
from disagg_gym.errors import UserError
from disagg_gym_agents.base import parse_overrides
try:  # the values too (an override without "=", a bad episode count), not only the syntax
    parse_overrides(getattr(ns, "set", None) or [])
    if getattr(ns, "episodes", 1) < 1:
        raise UserError(f"--episodes must be a positive integer (got {ns.episodes})")
    import os
    if os.environ["REPRO_BACKEND"] != "ray":  # the script passes --backend itself
        for flag, value in (("--address", ns.address), ("--num-workers", ns.num_workers)):
            if value is not None:
                raise UserError(f"{flag} needs --backend ray (got {flag} {value})")
except UserError as exc:
    error(str(exc))' "${EXTRA[@]}" || exit $?
fi
# The benchmark's (config, split) units, costliest first; this also checks every --configs id
# before anything is started (an unknown id is one line, exit 2).
PLAN=("$PYTHON" -m disagg_gym_agents.leaderboard.reproduce)
ids=$("${PLAN[@]}" units "${CFG_ARGS[@]}") || exit $?
if [ "$DRY" = 0 ]; then err=$(mkdir -p "$OUT" 2>&1) || die "--out '$OUT': ${err#mkdir: }"; fi
echo "+ mkdir -p $OUT" >&2

# Launches "$@" in the background once fewer than JOBS of ours run; output to the log $LOG.
launch() {
  echo "+ $* > $LOG 2>&1 &" >&2
  if [ "$DRY" = 0 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
    "$@" > "$LOG" 2>&1 &
    pids+=($!)
    logs+=("$LOG")
  fi
}
waitall() {  # waits for every launched job; fails naming the logs (and each failure's last line) if one failed
  local bad=0 i
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      bad=1
      echo "reproduce_leaderboard: ${logs[$i]}: $(tail -n 1 "${logs[$i]}" 2>/dev/null)" >&2
    fi
  done
  pids=()
  logs=()
  [ "$bad" = 0 ] || die "$1 failed (see $OUT/logs/)"
}
# Wall time of each stage of this invocation, on stderr and appended to DIR/timings.log
# ("<UTC time> <stage> <seconds since this invocation started>"): a resumed run's stages add up
# over its invocations.
stamp() {
  [ "$DRY" = 0 ] || return 0
  echo "$(date -u +%FT%TZ) $1 $SECONDS" >> "$OUT/timings.log"
  [ "$1" = start ] || echo "reproduce_leaderboard: $1 done after $((SECONDS / 3600)) h $((SECONDS % 3600 / 60)) min (this invocation)" >&2
}
run mkdir -p "$OUT/logs"
stamp start

# The SmallRoute-v3 ablations train (and are benchmarked) when SmallRoute-v3 is in the run.
ABLATE=0
if [ ${#CFG_ARGS[@]} -eq 0 ] || [[ " ${CFG_ARGS[*]} " == *" disagg/SmallRoute-v3 "* ]]; then ABLATE=1; fi
[ "$TRAIN" = 1 ] || ABLATE=0

# Pool 1: training, tuning and the bounds together (independent: the learned agents never read
# the tuned values). Training first, one process per training seed (each skips/resumes its own runs),
# then the two SmallRoute-v3 ablations, then one tune-baselines call per search of the
# committed leaderboard/tuned.yaml into DIR/tuned.yaml (written under a lock: parallel
# searches lose no entry), the costliest first.
pids=()
logs=()
if [ "$TRAIN" = 1 ]; then
  for s in $SEEDS; do
    LOG="$OUT/train_seed$s.log"
    train=("$PYTHON" scripts/train_leaderboard.py --seeds "$s" --dest "$OUT/checkpoints"
           --work "$OUT/runs" --log "$OUT/train_timings.jsonl")
    if [ ${#CFG_ARGS[@]} -gt 0 ]; then train+=(--configs "${CFG_ARGS[@]}"); fi
    launch "${train[@]}"
  done
  if [ "$ABLATE" = 1 ]; then
    # The two ablations of docs/leaderboard.md, one process each (seeds in turn).
    LOG="$OUT/train_ablation_noprior.log"
    launch "$PYTHON" scripts/train_leaderboard.py --configs disagg/SmallRoute-v3 --seeds $SEEDS \
      --hyperparams disagg_gym_agents/hyperparams/maskable_ppo_noprior.yml \
      --dest "$OUT/checkpoints-ablation-noprior" --work "$OUT/runs-noprior" --log "$OUT/train_timings.jsonl"
    LOG="$OUT/train_ablation_noreject.log"
    launch "$PYTHON" scripts/train_leaderboard.py --configs disagg/SmallRoute-v3 --seeds $SEEDS \
      --set env.allow_reject=false \
      --dest "$OUT/checkpoints-ablation-noreject" --work "$OUT/runs-noreject" --log "$OUT/train_timings.jsonl"
  fi
fi
if [ "$TUNE" = 1 ]; then
  searches=$("${PLAN[@]}" searches leaderboard/tuned.yaml --done "$OUT/tuned.yaml" "${CFG_ARGS[@]}")
  while read -r cfg metric nseeds pol step refine; do
    [ -n "$cfg" ] || continue
    # a coarse static_split grid is searched again with the same --split-step (and --refine)
    grid=()
    if [ "$step" != 1 ]; then grid=(--split-step "$step"); fi
    if [ "$refine" = 1 ]; then grid+=(--refine); fi
    LOG="$OUT/logs/tune_${cfg}_${pol//+/_}.log"
    launch "$PYTHON" -m disagg_gym.cli tune-baselines --config "$cfg" --policy "$pol" --metric "$metric" \
      --seeds "$nseeds" "${grid[@]}" --out "$OUT/tuned.yaml"
  done <<< "$searches"
  TUNED="$OUT/tuned.yaml"
else
  TUNED=leaderboard/tuned.yaml
fi
# The bounds the tables show, one process per config, into DIR/bounds_cache.json (merged under
# a lock), so the last benchmark call finds them instead of computing them alone at the end.
# (Benchmark options after -- may change the episodes or the env: then the tables call computes
# the bounds it needs itself.)
if [ ${#EXTRA[@]} -eq 0 ]; then
  bcfgs=$(awk '{print $1}' <<< "$ids" | uniq)
  for cfg in $bcfgs; do
    LOG="$OUT/logs/bounds_${cfg//\//_}.log"
    launch "${PLAN[@]}" bounds "$OUT" "$cfg"
  done
fi
waitall "training, tuning or bounds"
stamp training+tuning+bounds
if [ "$TRAIN" = 1 ]; then
  LEARNED=("sb3:maskable_ppo=$OUT/checkpoints")
  if [ "$ABLATE" = 1 ]; then LEARNED+=("sb3:maskable_ppo_noprior=$OUT/checkpoints-ablation-noprior"); fi
else
  LEARNED=()
fi
AGENTS=(heuristics jsq+ttft_guard least_finish+ttft_guard jsq+queue_guard "${LEARNED[@]}")


bench=("$PYTHON" -m disagg_gym.cli benchmark --out "$OUT" --agents "${AGENTS[@]}" --backend "$BACKEND" --tuned "$TUNED")
# Pool 2: the benchmark. Local: one process per (config, split) of the standard configs (or
# --configs), the costliest first, sharing DIR/results.csv safely; then in the same pool the
# compositions tuned for some configs only (llmd_scorer+ttft_guard on the prefix-cache configs:
# every other composition of the tuned file, on the configs it was tuned for, all their splits)
# and the no-reject ablation, on the env it was trained on (its rows record the override).
# Ray: those extra calls one at a time, then the whole benchmark as Ray tasks below.
if [ "$BACKEND" = local ]; then go=launch; else go=run; fi
pids=()
if [ "$BACKEND" = local ]; then
  while read -r cfg split; do
    LOG="$OUT/logs/benchmark_${cfg//\//_}_${split//:/_}.log"
    launch "${bench[@]}" --configs "$cfg" --splits "$split" --cells-only --no-progress \
      "${EXTRA[@]}"
  done <<< "$ids"
fi
extra=$("$PYTHON" -c 'import sys
from disagg_gym.env.registration import registered_ids
from disagg_gym_agents.tuning import own_compositions, read_tuned
tuned = read_tuned(sys.argv[1])
for env_id in sys.argv[2:] or registered_ids():
    pols = own_compositions(tuned, env_id)
    if pols:
        print(env_id, *pols)' "$([ -f "$TUNED" ] && echo "$TUNED" || echo leaderboard/tuned.yaml)" "${CFG_ARGS[@]}")
while read -r cfg pols; do
  [ -n "$cfg" ] || continue
  LOG="$OUT/logs/benchmark_${cfg//\//_}_compositions.log"
  read -r -a PARR <<< "$pols"
  "$go" "$PYTHON" -m disagg_gym.cli benchmark --out "$OUT" --configs "$cfg" --agents "${PARR[@]}" --backend "$BACKEND" \
    --tuned "$TUNED" --cells-only --no-progress "${EXTRA[@]}"
done <<< "$extra"
if [ "$ABLATE" = 1 ]; then
  LOG="$OUT/logs/benchmark_ablation_noreject.log"
  "$go" "$PYTHON" -m disagg_gym.cli benchmark --out "$OUT" --configs disagg/SmallRoute-v3 --backend "$BACKEND" \
    --agents "sb3:maskable_ppo_noreject=$OUT/checkpoints-ablation-noreject" --set env.allow_reject=false \
    --tuned "$TUNED" --cells-only --no-progress "${EXTRA[@]}"
fi
waitall benchmark
stamp benchmark
# (ray) the whole benchmark; (local) every cell is done: only the tables and plots are written
if [ ${#CFG_ARGS[@]} -gt 0 ]; then bench+=(--configs "${CFG_ARGS[@]}"); fi
run "${bench[@]}" "${EXTRA[@]}"
stamp tables

pids=()
logs=()
if [ "$DRY" = 0 ]; then
  vcfgs=$("$PYTHON" -c 'import sys
from disagg_gym_agents.leaderboard import read_results
print("\n".join(sorted({r["config"] for r in read_results(sys.argv[1])})))' "$OUT/results.csv")
else
  vcfgs="CONFIG"
fi
VARGS=()
if [ "$VSAMPLE" != all ]; then VARGS=(--sample "$VSAMPLE"); fi
for cfg in $vcfgs; do
  LOG="$OUT/logs/validate_${cfg//\//_}.log"
  launch "$PYTHON" -m disagg_gym.cli validate "$OUT/results.csv" --configs "$cfg" --no-progress "${VARGS[@]}"
done
waitall validate
stamp validate
if [ "$DRY" = 0 ]; then
  cat "$OUT"/logs/validate_*.log
  echo "reproduce_leaderboard: done: $OUT/results.csv, $OUT/LEADERBOARD.md (every config validated: manifest complete, $([ "$VSAMPLE" = all ] && echo "every row" || echo "$VSAMPLE sampled rows per config") replayed exactly)"
  echo "reproduce_leaderboard: to compare with the committed leaderboard: $PYTHON scripts/compare_reproduction.py $OUT"
fi
