# shellcheck shell=bash disable=SC2034  # EVO_LAUNCH, EVO_RESUME_FLAGS, EVO_RC are read by the batch scripts
# Shared plumbing of hpc/pbt.sbatch and hpc/baseline.sbatch. Source it, do not run it.
#
# What it provides:
#   evo_log MSG...            one log line on stdout (the job's output file), with wall time and epoch
#   evo_setup_env             site modules, the Python environment, threads per rank
#   evo_launcher_cmd          fills the array EVO_LAUNCH with the MPI launcher prefix (srun / mpiexec / none)
#   evo_resume_flags DIR      fills EVO_RESUME_FLAGS with --resume / --overwrite / nothing for run dir DIR
#   evo_check_args ARGS...    refuses flags the batch script sets itself
#   evo_run_preemptible CMD   runs CMD in the background, forwards USR1/TERM/INT to it, waits for its exit code
#   evo_finish RC DIR         maps evo's exit code to the job's fate (requeue on 75, 76, a lost node) and exits
#
# Settings (environment variables; every one has a default):
#   EVO_HOME        the evo checkout (the batch scripts find it; set it if they cannot)
#   EVO_MODULES     space-separated modules to `module load` first (default: none)   <-- SITE: adapt
#   EVO_VENV        virtualenv to activate (default: $EVO_HOME/.venv when it exists)
#   EVO_PYTHON      Python interpreter (default: python from the activated venv, else python3)
#   EVO_LAUNCHER    srun | mpiexec | none (default: srun)
#   EVO_SRUN_MPI    srun --mpi plugin: pmi2 (MPICH, Intel MPI) or pmix (Open MPI) (default: pmi2)  <-- SITE: adapt
#   EVO_SRUN_ARGS   extra srun arguments (default: none)
#   EVO_MPIEXEC     mpiexec / mpirun to use with EVO_LAUNCHER=mpiexec (default: mpiexec on PATH)
#   EVO_MPIEXEC_ARGS extra mpiexec arguments (default: none)
#   EVO_THREADS     torch threads per rank (default: $SLURM_CPUS_PER_TASK, else 0 = evo decides)
#   EVO_LOG_DIR     evo's --log-dir (default: $SLURM_SUBMIT_DIR/logs)
#   EVO_RESUME      auto (resume when the run has a complete checkpoint) | never (default: auto)
#   EVO_REQUEUE     1: requeue the job when evo stopped on a signal (exit 75); 0: just exit 75 (default: 1)
#   EVO_MAX_RESTARTS stop requeueing after this many restarts (default: 100)
#   EVO_RESIGNAL_EVERY after a stop signal, repeat it to the launcher every N seconds until it exits (default: 30)
#   EVO_STALL_GRACE after evo's progress watchdog fired (exit 76), give the launcher this many seconds to end
#                   before killing it: one that waits on a node it can no longer reach never ends (default: 20)

EXIT_DONE=0
EXIT_BAD_INPUT=2
EXIT_PREEMPTED=75
EXIT_STALLED=76     # evo's progress watchdog: no generation completed in time (silent network, lost node)

evo_log() {
    local now
    now=$(date '+%Y-%m-%d %H:%M:%S.%3N %s.%3N')
    # "[evo-hpc 2024-05-01 12:00:00.123 t=1714564800.123 job=42 restart=0] message"
    printf '[evo-hpc %s t=%s job=%s restart=%s] %s\n' "${now% *}" "${now##* }" \
        "${SLURM_JOB_ID:-none}" "${SLURM_RESTART_COUNT:-0}" "$*"
}

evo_die() {  # evo_die CODE MSG...
    local code=$1
    shift
    evo_log "error: $*" >&2
    exit "$code"
}

# -- environment -------------------------------------------------------------------------------
evo_setup_env() {
    # SITE: load the MPI (and Python) your mpi4py was built against, e.g.
    #   EVO_MODULES="gcc/12 openmpi/4.1 python/3.11"   or   EVO_MODULES="mpich/4.1"
    if [[ -n "${EVO_MODULES:-}" ]]; then
        command -v module >/dev/null 2>&1 || evo_die "$EXIT_BAD_INPUT" "EVO_MODULES is set but there is no 'module' command"
        # shellcheck disable=SC2086  # a list of module names
        module load $EVO_MODULES || evo_die "$EXIT_BAD_INPUT" "module load $EVO_MODULES failed"
    fi
    if [[ -z "${EVO_VENV:-}" && -d "$EVO_HOME/.venv" ]]; then
        EVO_VENV=$EVO_HOME/.venv
    fi
    if [[ -n "${EVO_VENV:-}" ]]; then
        [[ -f "$EVO_VENV/bin/activate" ]] || evo_die "$EXIT_BAD_INPUT" "EVO_VENV=$EVO_VENV is not a virtualenv"
        # shellcheck disable=SC1091
        source "$EVO_VENV/bin/activate"
    fi
    if [[ -z "${EVO_PYTHON:-}" ]]; then
        if [[ -n "${EVO_VENV:-}" ]]; then EVO_PYTHON=$EVO_VENV/bin/python; else EVO_PYTHON=$(command -v python3 || true); fi
    fi
    [[ -n "$EVO_PYTHON" && -x "$EVO_PYTHON" ]] || evo_die "$EXIT_BAD_INPUT" "no Python interpreter (set EVO_VENV or EVO_PYTHON)"

    # Threads: one rank per task; each rank gets the task's CPUs for torch / OpenMP / BLAS.
    local cpus=${SLURM_CPUS_PER_TASK:-}
    if [[ -z "${EVO_THREADS:-}" ]]; then
        EVO_THREADS=${cpus:-0}
    fi
    local omp=$EVO_THREADS
    [[ "$omp" -gt 0 ]] 2>/dev/null || omp=1
    export OMP_NUM_THREADS=$omp MKL_NUM_THREADS=$omp OPENBLAS_NUM_THREADS=$omp
    # Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch (23.11 restored it).
    if [[ -n "$cpus" ]]; then
        export SRUN_CPUS_PER_TASK=$cpus
    fi
    export PYTHONUNBUFFERED=1
    export EVO_THREADS EVO_PYTHON
}

# -- launcher ----------------------------------------------------------------------------------
evo_launcher_cmd() {
    local ntasks=${SLURM_NTASKS:-1}
    local -a extra=()
    case "${EVO_LAUNCHER:-srun}" in
        srun)
            # shellcheck disable=SC2206  # user-supplied word list
            extra=(${EVO_SRUN_ARGS:-})
            # --kill-on-bad-exit=1: a task that dies (e.g. in MPI_Init) must not leave the others
            # waiting until the time limit. On a stop signal every rank exits 75 only after the
            # ranks agreed to stop and the last checkpoint is complete, so nothing is lost there.
            EVO_LAUNCH=(srun "--mpi=${EVO_SRUN_MPI:-pmi2}" --kill-on-bad-exit=1 --ntasks="$ntasks" "${extra[@]}")
            ;;
        mpiexec)
            # shellcheck disable=SC2206
            extra=(${EVO_MPIEXEC_ARGS:-})
            # MPICH (Hydra) and Open MPI both read the allocation from Slurm's environment.
            EVO_LAUNCH=("${EVO_MPIEXEC:-mpiexec}" -n "$ntasks" "${extra[@]}")
            ;;
        none)
            [[ "$ntasks" -eq 1 ]] || evo_die "$EXIT_BAD_INPUT" "EVO_LAUNCHER=none runs one rank, but the job has $ntasks tasks"
            EVO_LAUNCH=()
            ;;
        *)
            evo_die "$EXIT_BAD_INPUT" "EVO_LAUNCHER must be srun, mpiexec or none, got '${EVO_LAUNCHER}'"
            ;;
    esac
}

# -- arguments ---------------------------------------------------------------------------------
evo_check_args() {
    local a
    for a in "$@"; do
        case "$a" in
            --log-dir|--log-dir=*|--exp-name|--exp-name=*|--resume|--no-resume|--overwrite|--no-overwrite)
                evo_die "$EXIT_BAD_INPUT" "do not pass $a in EVO_ARGS: the batch script sets it (use EVO_LOG_DIR / EVO_EXP_NAME)"
                ;;
        esac
    done
}

evo_has_arg() {  # evo_has_arg FLAG ARGS...: is --flag (or --flag=...) among ARGS?
    local flag=$1 a
    shift
    for a in "$@"; do
        [[ "$a" == "$flag" || "$a" == "$flag="* ]] && return 0
    done
    return 1
}

# The newest checkpoint of a run dir, or nothing: a folder with a member's manifest
# (checkpoints/gen_N/member_K.manifest.json), which both schedules write (a synchronous run adds
# manifest.json once every member of generation N has written theirs; evo --resume checks them).
evo_latest_checkpoint() {
    local dir=$1 m latest=""
    for m in "$dir"/checkpoints/gen_*/member_*.manifest.json; do
        [[ -f "$m" ]] && latest=$(basename "$(dirname "$m")")
    done
    printf '%s' "$latest"
}

# Decide how to start evo on run dir DIR:
#   a complete checkpoint exists          -> --resume (also after a requeue, or a resubmission by hand)
#   DIR exists without one, and this very
#   job created it (a stop or crash before
#   the first checkpoint)                  -> --overwrite (nothing was saved, start again)
#   otherwise                              -> a fresh start (evo refuses a non-empty DIR: exit 2)
evo_resume_flags() {
    local dir=$1 owner_file
    EVO_RUN_DIR=$dir  # evo_run_preemptible watches its watchdog marker
    owner_file="$(dirname "$dir")/.$(basename "$dir").slurm-job"
    EVO_RESUME_FLAGS=()
    local ckpt
    ckpt=$(evo_latest_checkpoint "$dir")
    if [[ -n "$ckpt" && "${EVO_RESUME:-auto}" != never ]]; then
        EVO_RESUME_FLAGS=(--resume)
        evo_log "run dir $dir has checkpoint $ckpt: resuming from it"
    elif [[ -d "$dir" && -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
        if [[ -z "$ckpt" && -f "$owner_file" && "$(cat "$owner_file")" == "$(evo_job_key)" ]]; then
            EVO_RESUME_FLAGS=(--overwrite)
            evo_log "run dir $dir was started by this job but has no complete checkpoint: starting again"
        else
            evo_log "run dir $dir exists and is not to be resumed (EVO_RESUME=${EVO_RESUME:-auto}) or was not started by this job"
            return 0  # evo refuses it (exit 2); do not claim it
        fi
    else
        evo_log "starting a new run in $dir"
    fi
    mkdir -p "$(dirname "$dir")"
    evo_job_key >"$owner_file"
}

evo_job_key() {  # stable across requeues: the job id (array: array job id + task id)
    if [[ -n "${SLURM_ARRAY_JOB_ID:-}" ]]; then
        printf '%s_%s' "$SLURM_ARRAY_JOB_ID" "${SLURM_ARRAY_TASK_ID:-0}"
    else
        printf '%s' "${SLURM_JOB_ID:-interactive-$$}"
    fi
}

# -- preemption-safe execution -----------------------------------------------------------------
# Slurm's --signal=B:USR1@T reaches only this shell. Bash runs a trap only between foreground
# commands, so the launcher runs in the background while the shell waits, and every signal is
# forwarded to it (srun and Hydra's mpiexec pass it on to all ranks; evo then stops at its next
# safe point and exits 75).
#
# A rank that has not yet installed evo's handler may miss the signal (MPICH's own SIGUSR1
# handler swallows it between MPI_Init and evo's setup), so after the first signal the shell
# sends it again every EVO_RESIGNAL_EVERY seconds (default 30) until the launcher exits.
EVO_CHILD=""
EVO_SIGNALLED=""
EVO_SIGNAL_TIME=""
EVO_LAST_SENT=0

_evo_send() {
    kill -s "$EVO_SIGNALLED" "$EVO_CHILD" 2>/dev/null || true
    EVO_LAST_SENT=$SECONDS
}

_evo_forward() {
    local sig=$1
    EVO_SIGNALLED=$sig
    [[ -n "$EVO_SIGNAL_TIME" ]] || EVO_SIGNAL_TIME=$(date +%s.%3N)
    if [[ -n "$EVO_CHILD" ]] && kill -0 "$EVO_CHILD" 2>/dev/null; then
        evo_log "received SIG$sig: forwarding it to the launcher (pid $EVO_CHILD); evo stops at its next safe point"
        _evo_send
    else
        evo_log "received SIG$sig (no launcher running)"
    fi
}

_evo_stalled_line() {  # the watchdog's line if it fired in this run dir, else nothing
    [[ -n "${EVO_RUN_DIR:-}" && -f "$EVO_RUN_DIR/.watchdog/stalled" ]] && head -n 1 "$EVO_RUN_DIR/.watchdog/stalled"
}

evo_run_preemptible() {
    trap '_evo_forward USR1' USR1
    trap '_evo_forward TERM' TERM
    trap '_evo_forward INT' INT
    [[ -z "${EVO_RUN_DIR:-}" ]] || rm -f "$EVO_RUN_DIR/.watchdog/stalled"  # a marker of an earlier allocation
    evo_log "launching: $*"
    "$@" &
    EVO_CHILD=$!
    local rc again every=${EVO_RESIGNAL_EVERY:-30} grace=${EVO_STALL_GRACE:-20} stalled_at="" stalled=""
    while :; do
        # Without a run dir to watch, and before any signal, just wait (no polling).
        if [[ -z "$EVO_SIGNALLED" && -z "${EVO_RUN_DIR:-}" ]]; then
            wait "$EVO_CHILD"
            rc=$?
            # wait returns >128 when a trapped signal interrupted it: then the launcher still runs
            [[ -n "$EVO_SIGNALLED" && $rc -gt 128 ]] || break
        fi
        if ! kill -0 "$EVO_CHILD" 2>/dev/null; then
            wait "$EVO_CHILD" 2>/dev/null
            again=$?
            [[ $again -eq 127 ]] || rc=$again  # 127: its status was collected already
            break
        fi
        # evo's watchdog fired (its ranks exit 76); a launcher still waiting for a node it cannot
        # reach would wait forever: give it EVO_STALL_GRACE seconds, then end it.
        if [[ -z "$stalled_at" ]] && stalled=$(_evo_stalled_line) && [[ -n "$stalled" ]]; then
            stalled_at=$SECONDS
            evo_log "evo's watchdog fired: $stalled"
        fi
        if [[ -n "$stalled_at" ]] && (( SECONDS - stalled_at >= grace )); then
            evo_log "launcher still running ${grace} s after the watchdog fired: killing it (pid $EVO_CHILD)"
            kill -TERM "$EVO_CHILD" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 "$EVO_CHILD" 2>/dev/null || break
                sleep 0.5
            done
            kill -KILL "$EVO_CHILD" 2>/dev/null || true
            wait "$EVO_CHILD" 2>/dev/null
            rc=$EXIT_STALLED
            break
        fi
        if [[ -n "$EVO_SIGNALLED" ]] && (( SECONDS - EVO_LAST_SENT >= every )); then
            evo_log "launcher still running $(( SECONDS - EVO_LAST_SENT )) s after SIG$EVO_SIGNALLED: sending it again"
            _evo_send
        fi
        sleep 0.2
    done
    EVO_CHILD=""
    # the launcher's own code after a watchdog exit depends on how it tore the other ranks down
    if [[ $rc -ne 0 && $rc -ne $EXIT_STALLED ]] && stalled=$(_evo_stalled_line) && [[ -n "$stalled" ]]; then
        evo_log "launcher exited with code $rc after evo's watchdog fired: treating it as $EXIT_STALLED"
        rc=$EXIT_STALLED
    fi
    EVO_RC=$rc
    local since=""
    [[ -z "$EVO_SIGNAL_TIME" ]] || since=" ($(awk -v a="$EVO_SIGNAL_TIME" -v b="$(date +%s.%3N)" 'BEGIN{printf "%.1f", b-a}') s after the first signal)"
    evo_log "launcher exited with code $rc$since"
}

_evo_requeue() {  # _evo_requeue DIR [CODE]: requeue this job (the next allocation resumes) or exit CODE (75)
    local dir=$1 code=${2:-$EXIT_PREEMPTED} ckpt restarts=${SLURM_RESTART_COUNT:-0}
    ckpt=$(evo_latest_checkpoint "$dir")
    evo_log "newest complete checkpoint: ${ckpt:-none}"
    if [[ -n "${EVO_CKPT_AT_START:-}" && "$ckpt" == "$EVO_CKPT_AT_START" ]]; then
        evo_log "warning: no new checkpoint in this allocation; give the job more time or an earlier --signal"
    fi
    if [[ "${EVO_REQUEUE:-1}" != 1 || -z "${SLURM_JOB_ID:-}" ]]; then
        evo_log "not requeueing (EVO_REQUEUE=${EVO_REQUEUE:-1}); resume by resubmitting with EVO_EXP_NAME=$(basename "$dir")"
        exit "$code"
    fi
    if [[ "$restarts" -ge "${EVO_MAX_RESTARTS:-100}" ]]; then
        evo_log "not requeueing: restart $restarts reached EVO_MAX_RESTARTS=${EVO_MAX_RESTARTS:-100}"
        exit "$code"
    fi
    evo_log "requeueing job $SLURM_JOB_ID; the next allocation resumes from ${ckpt:-the start}"
    if ! timeout 60 scontrol requeue "$SLURM_JOB_ID"; then
        evo_log "scontrol requeue failed (job cancelled, or not requeueable: submit with --requeue)"
    fi
    exit "$code"
}

# Nodes of this allocation whose slurmd no longer answers on its port (lost nodes), one per line.
evo_lost_nodes() {
    [[ -n "${SLURM_JOB_NODELIST:-}" ]] || return 0
    local port node addr
    port=$(timeout 10 scontrol show config 2>/dev/null | awk '$1 == "SlurmdPort" {print $3}')
    [[ -n "$port" ]] || return 0
    for node in $(timeout 10 scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null); do
        addr=$(timeout 10 scontrol -o show node "$node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
        timeout 5 bash -c "exec 3<>/dev/tcp/${addr:-$node}/$port" 2>/dev/null || printf '%s\n' "$node"
    done
}

_evo_ranks_on() {  # _evo_ranks_on HOST: the ranks evo's watchdog heartbeats place on HOST
    local f r ranks=""
    for f in "${EVO_RUN_DIR:-.}"/.watchdog/rank_*.json; do
        [[ -f "$f" ]] && grep -q "\"host\": \"$1\"" "$f" || continue
        r=$(basename "$f" .json)
        r=${r#rank_}
        ranks+="${ranks:+, }$((10#$r))"
    done
    printf '%s' "${ranks:-unknown}"
}

# Map evo's exit code to the job's fate and exit:
#   0 done | 2 bad input | 75 stopped on a signal, checkpointed -> requeue
#   76 stalled: evo's progress watchdog found no generation completed in time (a silent network or a
#      lost node: see the watchdog's line above) -> requeue; the next allocation resumes from the last
#      complete checkpoint, on whatever nodes Slurm gives it
#   other, with a node of the allocation lost (its slurmd no longer answers) -> one line per lost
#      node naming its ranks, then requeue | other: crash
# A launcher that died some other way after we forwarded a stop signal (a rank killed by it
# before evo could catch it) is treated as preempted too: checkpoints are written atomically,
# so the newest complete one is still good.
evo_finish() {
    local rc=$1 dir=$2
    case "$rc" in
        "$EXIT_DONE")
            evo_log "run complete: $dir"
            exit 0
            ;;
        "$EXIT_PREEMPTED")
            evo_log "evo stopped on a signal (exit 75)"
            _evo_requeue "$dir"
            ;;
        "$EXIT_STALLED")
            evo_log "evo stalled (exit 76: its watchdog saw no progress; see its line above)"
            _evo_requeue "$dir" "$EXIT_STALLED"
            ;;
        "$EXIT_BAD_INPUT")
            evo_log "evo rejected its input (exit 2): see the error above"
            exit "$EXIT_BAD_INPUT"
            ;;
        *)
            if [[ -n "$EVO_SIGNALLED" ]]; then
                evo_log "launcher ended with code $rc after SIG$EVO_SIGNALLED (a rank died of the signal before evo caught it): treating it as preempted"
                _evo_requeue "$dir"
            fi
            # A node of the allocation lost (its slurmd gone): the launcher ended the job; requeue it,
            # the next allocation resumes from the last complete checkpoint on healthy nodes.
            local lost node
            lost=$(evo_lost_nodes)
            if [[ -n "$lost" ]]; then
                for node in $lost; do
                    evo_log "lost node $node (its slurmd does not answer): ranks $(_evo_ranks_on "$node"); launcher exit $rc"
                done
                _evo_requeue "$dir" "$rc"
            fi
            evo_log "evo failed with exit code $rc"
            exit "$rc"
            ;;
    esac
}
