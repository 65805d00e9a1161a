"""The helper the exported Makefile calls (``instance.sh``): what a recipe line cannot say well.

Starting an instance in the background so that it can be stopped exactly (its own session,
so its PID is its process group's; the PID file holds the PID and its kernel start time, so a
reused PID is never taken for it), waiting for its readiness, for a job's exit status, and
stopping it with its stop signal and timeout. Every command is safe to repeat: ``start`` of a
running instance and ``stop`` of a stopped one say so and succeed. bash, not sh: arrays keep
each argument and each variable's value whole.
"""

# ruff: noqa: E501 (the script is bash: its lines are as long as its commands)

SCRIPT = r'''#!/usr/bin/env bash
# Written by `corral export make`: the Makefile's helper. Usage (STATE: the state dir):
#   instance.sh start NAME WORKDIR ENVFILE JOB -- ARGV...   start NAME in the background
#   instance.sh ready NAME WORKDIR ENVFILE SECONDS INITIAL PERIOD TIMEOUT SUCCESSES KIND ARGS...
#     KIND: tcp HOST PORT | http URL STATUS... | log REGEX | exec ARGV...
#   instance.sh done NAME SECONDS success|any                wait for a job's exit
#   instance.sh stop NAME SIGNAL SECONDS                     stop NAME's process group
#   instance.sh ps NAME...                                   one line per instance
set -u
state=${STATE:?STATE must name the state dir}
mkdir -p "$state/logs"

start_time() { # field 22 of /proc/PID/stat (after the command's parenthesis); a zombie has none
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    set -- $stat
    [[ $1 != Z ]] || return 1
    echo "${20}"
}

pid_of() { # the running instance's PID, or nothing
    local file="$state/$1.pid" pid when now
    [[ -f $file ]] || return 1
    read -r pid when < "$file" || return 1
    now=$(start_time "$pid") || return 1
    [[ $now == "$when" ]] || return 1
    echo "$pid"
}

# a member of process group $1 that is not a zombie (an exited leader may wait to be reaped)
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }

environment() { # the instance's variables as NAME=VALUE words in the array `vars`
    local name=$1 envfile=$2 n src
    vars=()
    for n in ${KEEP:-}; do
        [[ -v $n ]] && vars+=("$n=${!n}")
    done
    vars+=("CORRAL_INSTANCE=$name" "CORRAL_INSTANCE_INDEX=${name##*.}")
    vars+=("CORRAL_STATE_DIR=$state/data/${name%.*}")
    for n in ${SECRETS:-}; do # VAR=env:SOURCE or VAR=file:PATH
        src=${n#*=}
        case $src in
            env:*) [[ -v ${src#env:} ]] || { echo "$name: secret ${n%%=*} needs \$${src#env:} set" >&2; return 1; }
                   src=${src#env:}; vars+=("${n%%=*}=${!src}") ;;
            file:*) vars+=("${n%%=*}=$(cat -- "${src#file:}")") || return 1 ;;
        esac
    done
    vars+=("CORRAL_MAKE_ENV=$envfile")
}

# the words that run ARGV with the instance's environment: the kept variables, then its env file
RUNNER=(bash -c 'set -a; . "$CORRAL_MAKE_ENV"; set +a; unset CORRAL_MAKE_ENV; exec "$@"' bash)

case ${1:-} in
start)
    name=$2 workdir=$3 envfile=$4 job=$5; shift 6
    if pid=$(pid_of "$name"); then echo "$name: running (pid $pid)"; exit 0; fi
    status="$state/$name.status"
    if [[ $job == job && -f $status && $(cat "$status") == 0 ]]; then
        echo "$name: completed"; exit 0
    fi
    rm -f "$status" "$state/$name.pid"
    environment "$name" "$envfile" || exit 1
    mkdir -p "$state/data/${name%.*}"
    cd "$workdir" || exit 1
    # setsid -f, not `&`: bash makes a background job ignore SIGINT and SIGQUIT, and an
    # ignored signal stays ignored through exec (a stop signal of SIGINT would never land)
    export CORRAL_MAKE_STATUS=$status CORRAL_MAKE_NEW="$state/$name.new"
    rm -f "$CORRAL_MAKE_NEW"
    setsid -f bash -c 'echo $$ > "$CORRAL_MAKE_NEW.tmp"; mv "$CORRAL_MAKE_NEW.tmp" "$CORRAL_MAKE_NEW"; "$@"; echo $? > "$CORRAL_MAKE_STATUS"' \
        bash env -i "${vars[@]}" "${RUNNER[@]}" "$@" >> "$state/logs/$name.log" 2>&1 < /dev/null
    for _ in $(seq 200); do [[ -f $CORRAL_MAKE_NEW ]] && break; sleep 0.05; done
    read -r pid < "$CORRAL_MAKE_NEW" || { echo "$name: did not start (see $state/logs/$name.log)" >&2; exit 1; }
    rm -f "$CORRAL_MAKE_NEW"
    when=$(start_time "$pid") || when=gone
    echo "$pid $when" > "$state/$name.pid"
    echo "$name: started (pid $pid, log $state/logs/$name.log)"
    ;;
ready)
    name=$2 workdir=$3 envfile=$4 seconds=$5 initial=$6 period=$7 timeout=$8 need=$9 kind=${10}; shift 10
    sleep "$initial"
    deadline=$(( $(date +%s) + seconds )); good=0
    while :; do
        case $kind in
            tcp) timeout "$timeout" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null ;;
            http) code=$(timeout "$timeout" curl -ks -o /dev/null -w '%{http_code}' "$1")
                  [[ " ${*:2} " == *" $code "* ]] ;;
            log) grep -Eq -- "$1" "$state/logs/$name.log" 2>/dev/null ;;
            exec) environment "$name" "$envfile" && (cd "$workdir" && timeout "$timeout" env -i "${vars[@]}" "${RUNNER[@]}" "$@") > /dev/null 2>&1 ;;
        esac && good=$(( good + 1 )) || good=0
        (( good >= need )) && { echo "$name: ready"; exit 0; }
        if ! pid_of "$name" > /dev/null; then
            echo "$name: exited before it was ready (see $state/logs/$name.log)" >&2; exit 1
        fi
        (( $(date +%s) >= deadline )) && { echo "$name: not ready after ${seconds}s (READY_TIMEOUT)" >&2; exit 1; }
        sleep "$period"
    done
    ;;
done)
    name=$2 seconds=$3 want=$4
    deadline=$(( $(date +%s) + seconds ))
    while pid_of "$name" > /dev/null; do
        (( $(date +%s) >= deadline )) && { echo "$name: still running after ${seconds}s (WAIT_TIMEOUT)" >&2; exit 1; }
        sleep 0.2
    done
    code=$(cat "$state/$name.status" 2>/dev/null) || { echo "$name: not run, or stopped (no exit status)" >&2; exit 1; }
    if [[ $want == success && $code != 0 ]]; then echo "$name: failed (exit $code; see $state/logs/$name.log)" >&2; exit 1; fi
    echo "$name: completed (exit $code)"
    ;;
stop)
    name=$2 signal=$3 seconds=$4
    if ! pid=$(pid_of "$name"); then
        rm -f "$state/$name.pid" "$state/$name.status"; echo "$name: not running"; exit 0
    fi
    kill -s "${signal#SIG}" -- "-$pid" 2>/dev/null
    deadline=$(( $(date +%s) + seconds ))
    while group_alive "$pid" && (( $(date +%s) < deadline )); do sleep 0.1; done
    if group_alive "$pid"; then kill -s KILL -- "-$pid" 2>/dev/null; echo "$name: killed after ${seconds}s"; fi
    while group_alive "$pid"; do sleep 0.1; done
    rm -f "$state/$name.pid" "$state/$name.status"
    echo "$name: stopped"
    ;;
ps)
    shift
    printf '%-24s %-10s %s\n' INSTANCE STATE PID
    for name in "$@"; do
        if pid=$(pid_of "$name"); then printf '%-24s %-10s %s\n' "$name" running "$pid"
        elif [[ -f $state/$name.status ]]; then printf '%-24s %-10s %s\n' "$name" "exited($(cat "$state/$name.status"))" -
        else printf '%-24s %-10s %s\n' "$name" stopped -; fi
    done
    ;;
*) echo "usage: instance.sh start|ready|done|stop|ps ..." >&2; exit 2 ;;
esac
'''
