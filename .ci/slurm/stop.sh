#!/bin/bash
# Stop, in reverse order, only the daemons .ci/slurm/start.sh started (by their PID files).
S=${SLURM_DIR:-/var/tmp/slurm}/slurm
stop_pid() {  # $1 = pid file
  [[ -s "$1" ]] || return 0
  local p; p=$(cat "$1")
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}
stop_pid $S/run/slurmd.pid
stop_pid $S/run/slurmctld.pid
stop_pid $S/run/slurmdbd.pid
stop_pid /run/mysqld/mariadbd.pid
stop_pid /run/munge/munged.pid
