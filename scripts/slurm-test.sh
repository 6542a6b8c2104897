#!/usr/bin/env bash
# A real Slurm test of sweep workers, on this machine: a one-node Slurm from Debian's slurm-wlm and munge
# (slurmctld + slurmd on this host, no cgroups), the script of 'ticketlab sweep --emit slurm' submitted as
# a 3-task job array for a tiny synthetic sweep, one task cancelled (scancel) while it trains a level and
# resubmitted (sbatch --array=<task>), and the finished sweep compared with a single-process run of the
# same config: masks and weights bit for bit, the same metrics, every unit finished exactly once.
#
#   bash scripts/slurm-test.sh        as root on Debian 12 (installs slurm-wlm and munge if missing)
#
# Everything it starts (munged if it was not running, slurmctld, slurmd) is stopped by its PID on exit;
# its files live in a scratch folder that is removed unless KEEP=1. Ports: SLURMCTLD_PORT (6817) and
# SLURMD_PORT (6818). About a minute on a 2-core CPU (lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
say() { printf '[slurm-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (it starts slurmctld, slurmd and munged)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi

SCRATCH=$(mktemp -d /tmp/ticketlab-slurm.XXXXXX)
PIDS=()
JOBS=()
cleanup() {
  local rc=$?
  for j in "${JOBS[@]}"; do scancel "$j" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then say "files kept in $SCRATCH"; else rm -rf "$SCRATCH"; fi
  exit $rc
}
trap cleanup EXIT

# --- munge -----------------------------------------------------------------------------------------
if ! munge -n </dev/null >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || mungekey -c -f
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  runuser -u munge -- munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  PIDS+=("$(cat /run/munge/munged.pid)")
  munge -n </dev/null >/dev/null || fail "munged does not answer"
fi

# --- slurm -----------------------------------------------------------------------------------------
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || fail "host name $HOST does not resolve (add it to /etc/hosts)"
MEM=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))
mkdir -p "$SCRATCH/state" "$SCRATCH/spool" "$SCRATCH/log"
export SLURM_CONF=$SCRATCH/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=ticketlab-test
SlurmctldHost=$HOST
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
NodeName=$HOST CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
setsid slurmctld -D -f "$SLURM_CONF" >"$SCRATCH/log/slurmctld.out" 2>&1 &
PIDS+=($!)
setsid slurmd -D -f "$SLURM_CONF" >"$SCRATCH/log/slurmd.out" 2>&1 &
PIDS+=($!)
for i in $(seq 100); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
  [ "$state" = idle ] && break
  [ "$i" = 100 ] && fail "the node did not come up (sinfo: '$state'); see $SCRATCH/log"
  sleep 0.2
done
say "slurm up: node $HOST idle ($(sinfo -h -o '%c CPUs, %m MB'))"

# --- the sweep -------------------------------------------------------------------------------------
CONFIG=$SCRATCH/sweep.json
cat >"$CONFIG" <<EOF
{
  "description": "slurm-test: 2 seeds, IMP to level 2, one-shot and a random-pruning control at level 2",
  "out": "$SCRATCH/unused",
  "models": ["meso4"],
  "datasets": [{ "name": "syn", "spec": "synthetic:train=32,val=16,test=16,seed=1" }],
  "size": 32,
  "scopes": ["global"],
  "methods": ["imp", "oneshot", "controls"],
  "train": { "epochs": 4, "batch": 16, "lr": 0.001, "patience": 0 },
  "imp": { "levels": 2, "rate": 0.3 },
  "oneshot": { "levels": [2] },
  "controls": { "kinds": ["random_prune"], "levels": [2] },
  "seeds": [0, 1]
}
EOF
OUT=$SCRATCH/array
TL="node $REPO/bin/ticketlab.mjs"
$TL sweep "$CONFIG" --out "$OUT" --emit slurm --workers 3 --gpus-per-worker 0 --cpus-per-worker 1 --poll 0.5
SCRIPT=$OUT/sweep.sbatch
JOB=$(sbatch --parsable "$SCRIPT")
JOBS+=("$JOB")
say "submitted job array $JOB (3 workers)"

# Cancel task 1 while it trains a unit: wait for its claim in the event log (scancel's SIGTERM then
# saves the unit mid-epoch, often inside its first epoch, and the resubmitted task or another worker
# resumes it). AFTER_CHECKPOINT=1 also waits for the unit's first epoch checkpoint.
EVENTS=$OUT/sweep-events.jsonl
UNIT=
for i in $(seq 1200); do
  UNIT=$(grep '"event":"claim".*"worker":"sweep worker (slurm task 1)' "$EVENTS" 2>/dev/null | tail -1 | sed 's/.*"unit":"\([^"]*\)".*/\1/' || true)
  if [ -n "$UNIT" ] && { [ "${AFTER_CHECKPOINT:-0}" != 1 ] || [ -f "$OUT/$UNIT/checkpoint.safetensors" ]; }; then break; fi
  [ "$i" = 1200 ] && fail "task 1 never got into a unit; see $OUT/slurm"
  sleep 0.05
done
scancel "${JOB}_1"
say "cancelled task ${JOB}_1 (it held $UNIT)"
for i in $(seq 300); do
  squeue -h -j "$JOB" -o %i | grep -q "^${JOB}_1\$" || break
  sleep 0.1
done
JOB2=$(sbatch --parsable --array=1 "$SCRIPT")
JOBS+=("$JOB2")
say "resubmitted task 1 as job $JOB2"

for i in $(seq 1800); do
  [ -z "$(squeue -h -j "$JOB,$JOB2" 2>/dev/null)" ] && break
  [ "$i" = 1800 ] && fail "the array did not finish in 15 minutes; see $OUT/slurm"
  sleep 0.5
done
say "array finished"
sacct_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1; }
for log in "$OUT"/slurm/*.log; do say "$(basename "$log"): $(grep -E 'ran [0-9]+ unit|interrupt|taking over' "$log" | tr '\n' ' ')"; done
grep -q "\"unit\":\"$UNIT\"" "$EVENTS" || fail "no event for the cancelled unit $UNIT"
grep -Eq "\"event\":\"(interrupted|takeover)\",\"unit\":\"$UNIT\"|\"event\":\"(interrupted|takeover)\".*\"unit\":\"$UNIT\"" "$EVENTS" \
  || say "note: task 1 had finished $UNIT before the cancel reached it"

# --- the same sweep in one process, and the comparison ---------------------------------------------
say "single-process run of the same config"
$TL sweep "$CONFIG" --out "$SCRATCH/single" --quiet >"$SCRATCH/single.out" 2>"$SCRATCH/single.err" || { tail -5 "$SCRATCH/single.err"; fail "single-process sweep failed"; }
npx tsx scripts/compare-sweeps.ts "$CONFIG" "$OUT" "$SCRATCH/single" || fail "the array's sweep differs from the single-process one"
[ -f "$OUT/summary.csv" ] || fail "no report written by the last worker"
say "PASS"
