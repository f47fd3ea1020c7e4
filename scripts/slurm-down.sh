#!/usr/bin/env bash
# Stop what scripts/slurm-up.sh started (by the pids it recorded) and restore backed-up configs.
#   scripts/slurm-down.sh [STATE_DIR]     # default STATE_DIR=/tmp/beadseg-slurm
set -uo pipefail
STATE=${1:-/tmp/beadseg-slurm}
scancel --user="$(id -un)" 2>/dev/null || true
for name in slurmd slurmctld munged; do
    pidfile="$STATE/run/$name.pid"
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
done
for f in slurm.conf gres.conf; do
    if [[ -f /etc/slurm/$f.beadseg-backup ]]; then mv /etc/slurm/$f.beadseg-backup /etc/slurm/$f; fi
done
echo "slurm-down: stopped (state kept in $STATE; remove it with rm -rf $STATE)"
