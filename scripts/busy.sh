#!/usr/bin/env bash
# Loads the machine with N CPU-bound processes, to check that the test suite holds on a busy machine:
#
#   bash scripts/busy.sh start 4    # four busy loops in the background (pids in $BUSY_PIDS_FILE)
#   npm test
#   bash scripts/busy.sh stop       # stops exactly the processes 'start' began
#   bash scripts/busy.sh run 4 -- npm test   # the same in one go: start, run the command, stop
#
# Each process is a shell busy loop (no I/O, no memory), run at normal priority. The pid file defaults to
# ${TMPDIR:-/tmp}/ticketlab-busy-$USER.pids; stop kills only the pids listed there.
set -euo pipefail
PIDS_FILE=${BUSY_PIDS_FILE:-${TMPDIR:-/tmp}/ticketlab-busy-$(id -un).pids}

start() {
  local n=${1:?give the number of processes}
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "busy.sh: '$n' is not a number of processes" >&2; exit 2; }
  if [ -s "$PIDS_FILE" ]; then echo "busy.sh: $PIDS_FILE lists running busy processes; run 'bash scripts/busy.sh stop' first" >&2; exit 1; fi
  : > "$PIDS_FILE"
  for ((i = 0; i < n; i++)); do
    # setsid + nohup: the loops outlive this script and ignore the terminal's hangup.
    setsid nohup bash -c 'while :; do :; done' >/dev/null 2>&1 &
    echo $! >> "$PIDS_FILE"
  done
  echo "busy.sh: started $n CPU-bound processes ($(tr '\n' ' ' < "$PIDS_FILE")); stop them with 'bash scripts/busy.sh stop'"
}

stop() {
  [ -f "$PIDS_FILE" ] || { echo "busy.sh: nothing to stop ($PIDS_FILE does not exist)"; return 0; }
  local n=0
  while read -r pid; do
    [ -n "$pid" ] || continue
    # Only a process that is still one of our busy loops (a pid may have been reused meanwhile).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'while :; do :; done'; then
      kill "$pid" 2>/dev/null && n=$((n + 1))
    fi
  done < "$PIDS_FILE"
  rm -f "$PIDS_FILE"
  echo "busy.sh: stopped $n busy processes"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  run)
    n=${2:?give the number of processes}
    shift 2
    [ "${1:-}" = "--" ] && shift
    start "$n"
    trap stop EXIT
    "$@"
    ;;
  *)
    echo "usage: bash scripts/busy.sh start N | stop | run N -- COMMAND..." >&2
    exit 2
    ;;
esac
