#!/usr/bin/env bash
# local-slurm.sh -- a real single-node SLURM (Debian 12: Slurm 22.05) for valuedrift's tests.
#
#   tools/local-slurm.sh up       install (if missing), configure, start; wait until usable
#   tools/local-slurm.sh down     stop every daemon this script started (TERM, then KILL)
#   tools/local-slurm.sh status   sinfo + daemon liveness; exit 0 healthy, 1 otherwise
#   tools/local-slurm.sh env      print the `export SLURM_CONF=...` line
#
# VALUEDRIFT_SLURM_ACCOUNTING=0 brings up a cluster WITHOUT accounting instead (no MariaDB,
# no slurmdbd, AccountingStorageType=accounting_storage/none: `sacct` fails with "Slurm
# accounting storage is disabled"), as many small clusters are.  Switching modes restarts
# the daemons (same state dir, same ports: one instance at a time).
#
# Daemons (all without systemd, all state under $VALUEDRIFT_SLURM_DIR, default
# /tmp/valuedrift-slurm): a private munged (own socket), mariadbd (own datadir, 127.0.0.1
# only), slurmdbd, slurmctld, slurmd.  One node (= `hostname -s`), partitions `cpu`
# (default) and `gpu`, fake GPU gres (scheduling only), accounting via slurmdbd so that
# `sacct` works (snakemake-executor-plugin-slurm polls job status with sacct).
#
# `up` prints ONLY the export line on stdout (progress goes to stderr), so callers can do
#   eval "$(tools/local-slurm.sh up)"
# Must run as root.  See tools/README-slurm.md.
set -euo pipefail

# ----------------------------------------------------------------------------- settings
STATE=${VALUEDRIFT_SLURM_DIR:-/tmp/valuedrift-slurm}
case $STATE in /*) ;; *) STATE=$PWD/$STATE ;; esac
STATE=${STATE%/}
CLUSTER=${VALUEDRIFT_SLURM_CLUSTER:-valuedrift}
NGPUS=${VALUEDRIFT_SLURM_GPUS:-2}                 # fake GPUs on the node
CTLD_PORT=${VALUEDRIFT_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${VALUEDRIFT_SLURMD_PORT:-6818}
DBD_PORT=${VALUEDRIFT_SLURMDBD_PORT:-6819}
DB_PORT=${VALUEDRIFT_SLURM_DB_PORT:-3307}         # private mariadbd, 127.0.0.1 only
UP_TIMEOUT=${VALUEDRIFT_SLURM_TIMEOUT:-90}        # seconds for daemons to become usable
APT_TIMEOUT=${VALUEDRIFT_SLURM_APT_TIMEOUT:-900}  # seconds for apt-get install
STOP_TIMEOUT=${VALUEDRIFT_SLURM_STOP_TIMEOUT:-20} # seconds between TERM and KILL
ACCOUNTING=${VALUEDRIFT_SLURM_ACCOUNTING:-1}      # 0: no slurmdbd, accounting_storage/none
[[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || { echo "VALUEDRIFT_SLURM_ACCOUNTING must be 0 or 1" >&2; exit 2; }
# Symlink /etc/slurm/slurm.conf -> our slurm.conf (never replaces a regular file).  Needed
# by snakemake-executor-plugin-slurm: its job step (plugin-slurm-jobstep) removes every
# SLURM_* variable, SLURM_CONF included, before its nested `srun`, which then only finds
# the compiled-in /etc/slurm/slurm.conf.  Set to 0 to leave /etc alone.
LINK_ETC=${VALUEDRIFT_SLURM_LINK_ETC:-1}
ETC_CONF=/etc/slurm/slurm.conf

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
SPOOL=$STATE/spool
MUNGE_DIR=$STATE/munge
DB_DIR=$STATE/mysql
DEV_DIR=$STATE/dev
CONF=$ETC/slurm.conf
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
MUNGE_KEY=/etc/munge/munge.key
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurm-local-only
export SLURM_CONF=$CONF

PACKAGES=(munge slurm-wlm slurmctld slurmd slurm-client slurmdbd mariadb-server mariadb-client)
ALL_DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; stop in reverse
if ((ACCOUNTING)); then DAEMONS=("${ALL_DAEMONS[@]}"); else DAEMONS=(munged slurmctld slurmd); fi

log() { printf '[local-slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
q() { timeout "${2:-10}" bash -c "$1" </dev/null >/dev/null 2>&1; }  # quiet bounded check
export_line() { printf 'export SLURM_CONF=%s\n' "$CONF"; }

# --------------------------------------------------------------------------- processes
pid_alive() {  # pid expected-comm
  local pid=$1 comm
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$2" ]] || return 1
  # a zombie counts as dead
  [[ $(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null) != Z ]]
}

recorded_pid() { cat "$RUN/$1.pid" 2>/dev/null || true; }

daemon_alive() { pid_alive "$(recorded_pid "$1")" "$1"; }

# Daemons of THIS instance that lost their pid file (state dir partly wiped, crash of
# this script, ...): slurm daemons carry SLURM_CONF=$CONF in their environment,
# munged/mariadbd carry $STATE in their command line.  Never matches anything else.
orphans() {  # name
  local name=$1 p pid comm
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    { read -r comm <"$p/comm"; } 2>/dev/null || continue   # no fork per process
    [[ $comm == "$name" ]] || continue
    case $name in
      munged|mariadbd)
        { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$STATE/" && echo "$pid" ;;
      *)
        { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF -- "SLURM_CONF=$CONF" && echo "$pid" ;;
    esac
  done
  return 0
}

descendants() {  # pid... -> pids of all their descendants
  local -A parent_of=()
  local -a queue=("$@") out=()
  local p pid ppid cur key
  for p in /proc/[0-9]*; do
    ppid=
    while read -r key ppid; do [[ $key == PPid: ]] && break; ppid=; done < <(cat "$p/status" 2>/dev/null)
    [[ -n $ppid ]] && parent_of[${p#/proc/}]=$ppid
  done
  while ((${#queue[@]})); do
    cur=${queue[0]}; queue=("${queue[@]:1}")
    for pid in "${!parent_of[@]}"; do
      [[ ${parent_of[$pid]} == "$cur" ]] && { out+=("$pid"); queue+=("$pid"); }
    done
  done
  echo "${out[*]}"
}

# job step daemons left behind (jobs that slurmctld could not cancel): kill them together
# with the job processes under them; they ignore TERM while their job runs
stop_stepds() {
  local pids kids pid i
  pids=$(orphans slurmstepd)
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086
  kids=$(descendants $pids)
  log "stopping leftover slurmstepd (pid $pids) and their job processes ($kids)"
  # shellcheck disable=SC2086
  kill -TERM $kids $pids 2>/dev/null || true
  for ((i = 0; i < 10; i++)); do
    sleep 0.3
    for pid in $pids $kids; do [[ -d /proc/$pid ]] && continue 2; done
    return 0
  done
  # shellcheck disable=SC2086
  kill -KILL $kids $pids 2>/dev/null || true
}

stop_daemon() {  # name
  local name=$1 pid pids=() deadline left
  pid=$(recorded_pid "$name")
  pid_alive "$pid" "$name" && pids+=("$pid")
  for pid in $(orphans "$name"); do
    [[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
  done
  if ((${#pids[@]})); then
    log "stopping $name (pid ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while ((SECONDS < deadline)); do
      left=()
      for pid in "${pids[@]}"; do pid_alive "$pid" "$name" && left+=("$pid"); done
      ((${#left[@]})) || break
      sleep 0.2
    done
    left=()
    for pid in "${pids[@]}"; do pid_alive "$pid" "$name" && left+=("$pid"); done
    if ((${#left[@]})); then
      log "$name did not exit after ${STOP_TIMEOUT}s; sending KILL to ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$RUN/$name.pid"
}

active_jobs() {  # job ids in the given squeue states (comma list)
  timeout 10 squeue -h -t "$1" -o '%i' 2>/dev/null | sort -u | tr '\n' ' ' || true
}

cancel_all_jobs() {  # cancel every unfinished job (bounded), so no job outlives this instance
  local ids deadline
  daemon_running slurmctld && ctld_ok || return 0
  ids=$(active_jobs PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING,REQUEUED,RESIZING,SIGNALING,STAGE_OUT)
  [[ -n ${ids// /} ]] || return 0
  log "cancelling unfinished jobs: $ids"
  # shellcheck disable=SC2086
  timeout 15 scancel $ids >&2 || true
  deadline=$((SECONDS + 15))
  while [[ -n $(active_jobs RUNNING,COMPLETING,CONFIGURING | tr -d ' ') ]] && ((SECONDS < deadline)); do
    sleep 0.5
  done
}

stop_all() {  # also works when $STATE was deleted under running daemons
  local i
  [[ -f $CONF ]] && cancel_all_jobs
  stop_stepds
  # every daemon, whichever mode started them (a mode switch stops the other mode's too)
  for ((i = ${#ALL_DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${ALL_DAEMONS[i]}"; done
  # no job survives a restart: drop slurmd's per-job leftovers (stale step sockets would
  # leave recovered jobs COMPLETING for minutes)
  [[ -d $SPOOL/slurmd ]] && find "$SPOOL/slurmd" -mindepth 1 -delete 2>/dev/null || true
  rm -f "$MUNGE_DIR/munged.pid" "$DB_DIR/mysqld.pid" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" \
        "$DB_DIR/mysqld.sock" "$DB_DIR/mysqld.sock.lock"
}

soon() { echo $((SECONDS + $1 < DEADLINE ? SECONDS + $1 : DEADLINE)); }  # min(now+s, DEADLINE)

wait_for() {  # description deadline(SECONDS) command...
  local what=$1 deadline=$2; shift 2
  while ! "$@"; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}

daemon_running() {  # name: recorded pid alive, or any process of this instance by that name
  daemon_alive "$1" || [[ -n $(orphans "$1") ]]
}

wait_daemon() {  # name deadline check-command...: like wait_for, but gives up as soon
  local name=$1 deadline=$2 t0=$SECONDS; shift 2    # as the daemon has died
  while ! "$@"; do
    if ((SECONDS - t0 >= 2)) && ! daemon_running "$name"; then
      log "$name is not running (died at startup?)"; return 1
    fi
    ((SECONDS < deadline)) || { log "timed out waiting for $name"; return 1; }
    sleep 0.5
  done
  # record the daemon's pid (daemonized processes write their own pid files)
  daemon_alive "$name" || orphans "$name" | head -n 1 >"$RUN/$name.pid"
}

show_log() {  # file
  [[ -f $1 ]] || return 0
  log "---- last lines of $1 ----"
  tail -n 25 "$1" >&2 || true
}

# ---------------------------------------------------------------------------- packages
packages_missing() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  echo "${missing[*]}"
}

ensure_packages() {
  local missing added_policy=0
  missing=$(packages_missing)
  [[ -z $missing ]] && return 0
  log "installing Debian packages: $missing"
  command -v apt-get >/dev/null || die "apt-get not found (Debian/Ubuntu required)"
  # keep the packages' init scripts from starting system-wide daemons
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq >&2 || log "apt-get update failed (continuing)"
  # shellcheck disable=SC2086
  timeout "$APT_TIMEOUT" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing >&2 || rc=$?
  ((added_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install failed (rc=$rc)"
  missing=$(packages_missing)
  [[ -z $missing ]] || die "packages still missing after apt-get: $missing"
}

# ------------------------------------------------------------------------------ config
node_name() { hostname -s; }

write_if_changed() {  # file mode content -> returns 0 if changed
  local f=$1 mode=$2 content=$3
  if [[ -f $f ]] && [[ $(cat "$f") == "$content" ]]; then
    chmod "$mode" "$f"; return 1
  fi
  printf '%s\n' "$content" >"$f.tmp"
  chmod "$mode" "$f.tmp"
  mv -f "$f.tmp" "$f"
  return 0
}

gen_configs() {  # -> sets CONFIG_CHANGED=1 if any config file changed
  local node cpus mem_mb real_mem hw topo="" gpu_last i
  node=$(node_name)
  [[ -n $node ]] || die "hostname -s is empty"
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo)
  real_mem=$((mem_mb * 90 / 100))
  ((real_mem > 1024)) || real_mem=$((mem_mb - 100))
  # use slurmd's view of the socket/core/thread layout when it agrees with nproc
  hw=$(timeout 10 slurmd -C 2>/dev/null | head -n 1 || true)
  if [[ $hw =~ CPUs=([0-9]+)\ Boards=([0-9]+)\ SocketsPerBoard=([0-9]+)\ CoresPerSocket=([0-9]+)\ ThreadsPerCore=([0-9]+) ]] \
     && [[ ${BASH_REMATCH[1]} == "$cpus" ]]; then
    topo=" Boards=${BASH_REMATCH[2]} SocketsPerBoard=${BASH_REMATCH[3]} CoresPerSocket=${BASH_REMATCH[4]} ThreadsPerCore=${BASH_REMATCH[5]}"
  fi

  # fake GPUs: slurmd counts gres/gpu by device files, so give it NGPUS files
  local gres_line="" gres_conf="AutoDetect=off"
  if ((NGPUS > 0)); then
    gpu_last=$((NGPUS - 1))
    # char devices like /dev/null (1,3); plain files also count, but slurmd logs an error
    for ((i = 0; i < NGPUS; i++)); do
      [[ -c $DEV_DIR/nvidia$i ]] && continue
      rm -f "$DEV_DIR/nvidia$i"
      mknod -m 666 "$DEV_DIR/nvidia$i" c 1 3 2>/dev/null || : >"$DEV_DIR/nvidia$i"
    done
    gres_line=" Gres=gpu:$NGPUS"
    if ((NGPUS == 1)); then
      gres_conf+=$'\n'"NodeName=$node Name=gpu File=$DEV_DIR/nvidia0"
    else
      gres_conf+=$'\n'"NodeName=$node Name=gpu File=$DEV_DIR/nvidia[0-$gpu_last]"
    fi
  fi

  local accounting="JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu"
  ((ACCOUNTING)) || accounting="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"

  CONFIG_CHANGED=0
  write_if_changed "$CONF" 644 "# generated by tools/local-slurm.sh -- do not edit
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$ETC/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
$accounting
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
DefMemPerCPU=1024
NodeName=$node NodeHostname=$node NodeAddr=127.0.0.1 CPUs=$cpus$topo RealMemory=$real_mem$gres_line State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP" && CONFIG_CHANGED=1

  write_if_changed "$ETC/gres.conf" 644 "$gres_conf" && CONFIG_CHANGED=1
  write_if_changed "$ETC/plugstack.conf" 644 "# empty: no SPANK plugins" && CONFIG_CHANGED=1
  # slurmdbd insists on owner == SlurmUser and mode 600
  write_if_changed "$ETC/slurmdbd.conf" 600 "# generated by tools/local-slurm.sh -- do not edit
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME" && CONFIG_CHANGED=1
  chown root:root "$ETC/slurmdbd.conf"
  return 0
}

prepare_dirs() {
  mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$SPOOL/slurmctld" "$SPOOL/slurmd" "$MUNGE_DIR" "$DB_DIR" "$DEV_DIR"
  chmod 755 "$STATE" "$ETC" "$RUN" "$LOG" "$DEV_DIR"
  chmod 700 "$SPOOL/slurmctld" "$SPOOL/slurmd"
  chown munge:munge "$MUNGE_DIR"; chmod 755 "$MUNGE_DIR"
  chown mysql:mysql "$DB_DIR"; chmod 750 "$DB_DIR"
  touch "$LOG/munged.log" "$LOG/mariadb.log"
  chown munge:munge "$LOG/munged.log"; chmod 640 "$LOG/munged.log"
  chown mysql:mysql "$LOG/mariadb.log"
}

# ------------------------------------------------------------------------------ health
sinfo_state() { timeout 10 sinfo -h -N -n "$(node_name)" -o '%t' 2>/dev/null | head -n 1; }
node_idle() { [[ $(sinfo_state) == idle ]]; }
node_usable() { [[ $(sinfo_state) =~ ^(idle|mix|mixed|alloc|allocated|comp|completing)$ ]]; }
sacct_ok() { q "sacct -n -X -S now-1minutes -o JobID"; }
munge_ok() { q "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"; }
db_ok() { q "mariadb-admin --no-defaults --socket='$DB_DIR/mysqld.sock' -uroot ping"; }
dbd_ok() { q "sacctmgr -n -P show cluster format=cluster"; }
ctld_ok() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

all_alive() {
  local d
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" || return 1; done
}

healthy() { all_alive && munge_ok && ctld_ok && node_usable && { ((!ACCOUNTING)) || sacct_ok; }; }

# ------------------------------------------------------------------------------ starts
start_munged() {
  [[ -f $MUNGE_KEY ]] || {
    log "creating munge key $MUNGE_KEY"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$MUNGE_KEY" --force
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
  }
  chown munge:munge /etc/munge "$MUNGE_KEY"; chmod 700 /etc/munge; chmod 400 "$MUNGE_KEY"
  mkdir -p /var/lib/munge; chown munge:munge /var/lib/munge
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_DIR/munged.pid"
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$LOG/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" 9>&- </dev/null >>"$LOG/munged.log" 2>&1 \
    || { show_log "$LOG/munged.log"; die "munged failed to start"; }
  wait_for "munged pid file" $((SECONDS + 15)) test -s "$MUNGE_DIR/munged.pid" || true
  cp "$MUNGE_DIR/munged.pid" "$RUN/munged.pid" 2>/dev/null || true
  wait_daemon munged "$(soon 15)" munge_ok || { show_log "$LOG/munged.log"; die "munge does not work"; }
}

sql() { timeout 30 mariadb --no-defaults --socket="$DB_DIR/mysqld.sock" -uroot -e "$1"; }

start_mariadb() {
  local data=$DB_DIR/data
  if [[ ! -d $data/mysql ]]; then
    log "initialising MariaDB datadir $data"
    rm -rf "$data"
    mkdir -p "$data"; chown mysql:mysql "$data"
    timeout 120 mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
      --auth-root-authentication-method=socket --skip-test-db >>"$LOG/mariadb.log" 2>&1 \
      || { show_log "$LOG/mariadb.log"; die "mariadb-install-db failed"; }
  fi
  rm -f "$DB_DIR/mysqld.pid" "$DB_DIR/mysqld.sock" "$DB_DIR/mysqld.sock.lock"
  log "starting mariadbd (127.0.0.1:$DB_PORT)"
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$data" \
    --socket="$DB_DIR/mysqld.sock" --pid-file="$DB_DIR/mysqld.pid" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
    --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M \
    --innodb-lock-wait-timeout=900 --max-connections=100 \
    9>&- </dev/null >>"$LOG/mariadb.log" 2>&1 &
  echo $! >"$RUN/mariadbd.pid"
  wait_daemon mariadbd "$DEADLINE" db_ok || { show_log "$LOG/mariadb.log"; die "mariadbd did not come up"; }
  [[ -s $DB_DIR/mysqld.pid ]] && cp "$DB_DIR/mysqld.pid" "$RUN/mariadbd.pid"
  sql "CREATE DATABASE IF NOT EXISTS $DB_NAME;
       CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
       CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
       GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
       GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
       FLUSH PRIVILEGES;" || die "could not create the accounting database/user"
}

start_slurmdbd() {
  log "starting slurmdbd (port $DBD_PORT)"
  rm -f "$RUN/slurmdbd.pid"
  /usr/sbin/slurmdbd 9>&- </dev/null >>"$LOG/slurmdbd.log" 2>&1 \
    || { show_log "$LOG/slurmdbd.log"; die "slurmdbd failed to start"; }
  wait_daemon slurmdbd "$DEADLINE" dbd_ok || { show_log "$LOG/slurmdbd.log"; die "slurmdbd does not answer"; }
  if ! timeout 10 sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qxF "$CLUSTER"; then
    log "registering cluster $CLUSTER in slurmdbd"
    timeout 30 sacctmgr -i add cluster "$CLUSTER" >&2 || die "sacctmgr add cluster failed"
  fi
}

start_slurmctld() {
  local attempt
  for attempt in 1 2; do
    log "starting slurmctld (port $CTLD_PORT)"
    rm -f "$RUN/slurmctld.pid"
    /usr/sbin/slurmctld -i -f "$CONF" 9>&- </dev/null >>"$LOG/slurmctld.log" 2>&1 || true
    if wait_daemon slurmctld "$(soon 30)" ctld_ok; then
      return 0
    fi
    show_log "$LOG/slurmctld.log"
    stop_daemon slurmctld
    ((attempt == 1)) || break
    log "slurmctld did not come up; discarding its saved state and retrying"
    rm -rf "$SPOOL/slurmctld.old"
    mv "$SPOOL/slurmctld" "$SPOOL/slurmctld.old" 2>/dev/null || true
    mkdir -p "$SPOOL/slurmctld"; chmod 700 "$SPOOL/slurmctld"
  done
  die "slurmctld did not come up"
}

node_registered_since() {  # epoch: has the slurmd started at/after epoch registered?
  local t
  t=$(timeout 10 scontrol show node -o "$(node_name)" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [[ -n $t && $t != None ]] || return 1
  t=$(date -d "$t" +%s 2>/dev/null) || return 1
  ((t >= $1 - 1))
}

node_fail() {  # message
  timeout 10 sinfo -N -l >&2 || true
  timeout 10 scontrol show node "$(node_name)" >&2 || true
  show_log "$LOG/slurmd.log"; show_log "$LOG/slurmctld.log"
  die "$1"
}

start_slurmd() {
  local t_start st resumed=0
  t_start=$(date +%s)
  log "starting slurmd (port $SLURMD_PORT)"
  rm -f "$RUN/slurmd.pid"
  /usr/sbin/slurmd -f "$CONF" -N "$(node_name)" 9>&- </dev/null >>"$LOG/slurmd.log" 2>&1 \
    || { show_log "$LOG/slurmd.log"; die "slurmd failed to start"; }
  # the node state shown right after a slurmctld restart is the saved one; wait until
  # THIS slurmd has registered before judging (or touching) the node
  wait_daemon slurmd "$DEADLINE" node_registered_since "$t_start" \
    || node_fail "slurmd did not register with slurmctld"
  while ! node_usable; do
    st=$(sinfo_state || true)
    if ((!resumed)) && [[ $st =~ ^(drain|drng|drained|draining|down|inval|fail|maint)\*?$ ]]; then
      log "node state '$st' (stale from an earlier run?); resuming it"
      timeout 10 scontrol update nodename="$(node_name)" state=resume >&2 || true
      resumed=1
    fi
    ((SECONDS < DEADLINE)) || node_fail "node $(node_name) is '$st', not usable, after ${UP_TIMEOUT}s"
    sleep 0.5
  done
  # jobs recovered from slurmctld's saved state cannot still be running (every slurmstepd
  # was stopped before this start): they would hold CPUs/GPUs forever -> cancel them
  cancel_all_jobs
  wait_for "node $(node_name) idle" "$(soon 10)" node_idle && return 0
  # rare: a recovered job stays COMPLETING -> cycle the node, then restart slurmctld
  log "node still '$(sinfo_state)'; cycling it DOWN/RESUME to clear stale allocations"
  timeout 10 scontrol update nodename="$(node_name)" state=down reason=local-slurm-reset >&2 || true
  timeout 10 scontrol update nodename="$(node_name)" state=resume >&2 || true
  wait_for "node $(node_name) idle" "$(soon 10)" node_idle && return 0
  log "node still '$(sinfo_state)'; restarting slurmctld"
  stop_daemon slurmctld
  start_slurmctld
  cancel_all_jobs
  wait_for "node $(node_name) idle" "$DEADLINE" node_idle \
    || node_fail "node $(node_name) is '$(sinfo_state)', not idle, after ${UP_TIMEOUT}s"
}

# ---------------------------------------------------------------------------- commands
link_etc_conf() {
  ((LINK_ETC)) || return 0
  if [[ -L $ETC_CONF || ! -e $ETC_CONF ]]; then
    [[ $(readlink "$ETC_CONF" 2>/dev/null) == "$CONF" ]] && return 0
    mkdir -p "${ETC_CONF%/*}"
    ln -sfn "$CONF" "$ETC_CONF"
    log "linked $ETC_CONF -> $CONF"
  else
    log "WARNING: $ETC_CONF is a regular file; left alone (srun inside snakemake jobs will read it)"
  fi
}

unlink_etc_conf() {
  [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]] && rm -f "$ETC_CONF"
  return 0
}

with_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  local timeout_lock=$((UP_TIMEOUT + APT_TIMEOUT + 120))
  flock -w "$timeout_lock" 9 || die "could not lock $STATE/.lock"
}

cmd_up() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  local t0=$SECONDS
  with_lock
  ensure_packages
  prepare_dirs
  gen_configs
  link_etc_conf
  if ((CONFIG_CHANGED == 0)) && healthy; then
    log "already up and healthy"
    export_line
    return 0
  fi
  ((CONFIG_CHANGED)) && log "configuration written to $ETC"
  log "(re)starting all daemons"
  stop_all
  DEADLINE=$((SECONDS + UP_TIMEOUT))
  start_munged
  if ((ACCOUNTING)); then
    start_mariadb
    start_slurmdbd
  fi
  start_slurmctld
  start_slurmd
  if ((ACCOUNTING)); then
    wait_for sacct "$DEADLINE" sacct_ok || { show_log "$LOG/slurmdbd.log"; die "sacct does not answer"; }
  fi
  local acct=slurmdbd
  ((ACCOUNTING)) || acct=none
  log "SLURM is up in $((SECONDS - t0))s (node $(node_name), partitions cpu*/gpu, $NGPUS fake GPUs, accounting $acct)"
  export_line
}

cmd_down() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  if [[ -d $STATE ]]; then
    exec 9>"$STATE/.lock"
    flock -w 60 9 || log "could not lock $STATE/.lock; stopping anyway"
  fi
  stop_all
  unlink_etc_conf
  log "down"
}

cmd_status() {
  local d ok=0 pid
  [[ -f $CONF ]] || { echo "no configuration at $CONF (never started?)"; export_line; return 1; }
  # the mode the running instance was started in
  grep -qx 'AccountingStorageType=accounting_storage/none' "$CONF" && { ACCOUNTING=0; DAEMONS=(munged slurmctld slurmd); }
  if daemon_alive slurmctld; then timeout 10 sinfo 2>&1 || ok=1; fi
  for d in "${DAEMONS[@]}"; do
    pid=$(recorded_pid "$d")
    if pid_alive "$pid" "$d"; then
      printf '%-10s alive (pid %s)\n' "$d" "$pid"
    else
      printf '%-10s DEAD\n' "$d"; ok=1
    fi
  done
  if ((!ACCOUNTING)); then
    echo "sacct      off (accounting_storage/none)"
  elif daemon_alive munged && daemon_alive slurmdbd && sacct_ok; then
    echo "sacct      answers"
  else
    echo "sacct      FAILS"; ok=1
  fi
  if daemon_alive munged && daemon_alive slurmctld && node_usable; then
    echo "node       $(node_name) $(sinfo_state)"
  else
    echo "node       $(node_name) NOT usable"; ok=1
  fi
  export_line
  return $ok
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) export_line ;;
  *) echo "usage: $0 {up|down|status|env}   (state dir: $STATE)" >&2; exit 2 ;;
esac
