#!/usr/bin/env bash
# Bring up a single-node Slurm on this machine (Debian 12, root, no systemd): munge, slurmctld, slurmd,
# two stand-in GPUs (gres.conf File=/dev/null, /dev/zero) so `--gpus=1` jobs are accepted.
# No accounting daemon: the Snakemake SLURM plugin is told to poll `squeue` instead of `sacct`
# (--slurm-status-command squeue), which is reliable because MinJobAge keeps finished jobs visible.
#
#   sudo scripts/slurm-up.sh [STATE_DIR]     # default STATE_DIR=/tmp/beadseg-slurm
#   scripts/slurm-down.sh [STATE_DIR]
#
# Writes STATE_DIR/env (SLURM_PARTITION=..., pids) for tests. Only for throw-away machines and CI.
set -euo pipefail

STATE=${1:-/tmp/beadseg-slurm}
PARTITION=${BEADSEG_SLURM_PARTITION:-debug}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm munge
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,log,run} /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge

# --- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    munged --force --pid-file="$STATE/run/munged.pid" || munged --force
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
fi
munge -n | unmunge | grep -q 'STATUS: *Success'

# --- slurm.conf / gres.conf (backed up once if they exist)
for f in slurm.conf gres.conf; do
    [[ -f /etc/slurm/$f && ! -f /etc/slurm/$f.beadseg-backup ]] && cp /etc/slurm/$f /etc/slurm/$f.beadseg-backup
done
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=beadseg
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: the Snakemake plugin polls squeue (no sacct here).
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
NodeName=$HOST Name=gpu File=/dev/zero
CONF

# --- daemons (started by hand: no systemd)
slurmctld -i
slurmd
for _ in $(seq 60); do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)
    [[ $state == idle* ]] && break
    sleep 0.5
done
sinfo
cat > "$STATE/env" <<ENV
SLURM_PARTITION=$PARTITION
SLURMCTLD_PID=$(cat "$STATE/run/slurmctld.pid" 2>/dev/null || true)
SLURMD_PID=$(cat "$STATE/run/slurmd.pid" 2>/dev/null || true)
MUNGED_PID=$(cat "$STATE/run/munged.pid" 2>/dev/null || true)
ENV
[[ $state == idle* ]] || { echo "slurm-up: node did not become idle (state '$state'); see $STATE/log" >&2; exit 1; }
echo "slurm-up: single-node Slurm ready (partition $PARTITION, $CPUS CPUs, 2 stand-in GPUs); state in $STATE"
