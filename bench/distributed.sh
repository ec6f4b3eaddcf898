#!/usr/bin/env bash
# Distributed mode: how the throughput scales from 1 worker to 4 workers.
#
# Every run starts afresh: a sandbox S3 server, a throttling proxy in front of it (each TCP
# connection's upload limited to --rate-kib, so the copy is network-bound and not bound by this
# machine's cores), a NATS JetStream server, a master folder and one folder per worker. The
# workers (`ossimport worker`) start first; then the master submits and starts the job, and the
# wall time runs from just before `start` to the `stat` that shows JobState:Succeed. The bucket
# must then equal the source (diff -r). Each repetition runs 1 and 4 workers, alternating which
# goes first. Writes a Markdown report (default bench/results-distributed.md) and prints it.
#
#   bench/distributed.sh [--files N] [--kib K] [--rate-kib R] [--reps N] [--threads T]
#                        [--out FILE] [--no-build] [-h]
#
# Why 480 files by default: a worker takes up to 4 tasks at once (one per lane), and with 240
# files (12 tasks of 20) the 4 workers got them 4/3/3/2, so the busiest one set the wall and
# the ratio was 2.99x; with 24 tasks each worker got 6 and a 1-worker run lasts ~120 s.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=480 KIB=512 RATE=512 REPS=3 THREADS=4 OUT=bench/results-distributed.md BUILD=1
FOLDERS=12 TASK_LIMIT=20 TIMEOUT=600 CONFIGS=(1 4)
CMDLINE="bench/distributed.sh${*:+ $*}"

usage() {
    cat <<EOF
usage: bench/distributed.sh [options]
  --files N      source files, spread over $FOLDERS folders (default $FILES)
  --kib K        size of each file in KiB (default $KIB)
  --rate-kib R   upload KiB/s per TCP connection through the proxy (default $RATE)
  --reps N       repetitions; each runs 1 worker and 4 workers (default $REPS)
  --threads T    workerTaskThreadNum of every worker (default $THREADS)
  --out FILE     the report (default $OUT)
  --no-build     use the existing release binary (no cargo build --release)
  -h, --help     this text
BENCH_KEEP=1 in the environment keeps the scratch folder (each run's logs) instead of removing it.
EOF
}
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "$1 needs a value" >&2; exit 2; }; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "$1 wants a positive integer, not '$2'" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --files) need "$@"; posint "$1" "$2"; FILES="$2"; shift 2 ;;
        --kib) need "$@"; posint "$1" "$2"; KIB="$2"; shift 2 ;;
        --rate-kib) need "$@"; posint "$1" "$2"; RATE="$2"; shift 2 ;;
        --reps) need "$@"; posint "$1" "$2"; REPS="$2"; shift 2 ;;
        --threads) need "$@"; posint "$1" "$2"; THREADS="$2"; shift 2 ;;
        --out) need "$@"; OUT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$BUILD" = 1 ]; then cargo build --release --quiet; fi
case "${CARGO_TARGET_DIR:-target}" in
    /*) BIN="$CARGO_TARGET_DIR/release/ossimport" ;;
    *) BIN="$PWD/${CARGO_TARGET_DIR:-target}/release/ossimport" ;;
esac
[ -x "$BIN" ] || { echo "no release binary at $BIN (run without --no-build)" >&2; exit 1; }
PROXY="$PWD/bench/throttle_proxy.py"

NATS="$(command -v nats-server || true)"
[ -n "$NATS" ] || { [ -x /usr/sbin/nats-server ] && NATS=/usr/sbin/nats-server; } || true
if [ -z "$NATS" ]; then
    echo "installing nats-server" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y nats-server >&2; else sudo apt-get install -y nats-server >&2; fi
    NATS="$(command -v nats-server || echo /usr/sbin/nats-server)"
fi

PARENT=/dev/shm
[ -d "$PARENT" ] && [ -w "$PARENT" ] || PARENT="${TMPDIR:-/tmp}"
ROOT="$(mktemp -d "$PARENT/ossimport-dist.XXXXXX")"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $ROOT (logs of every run)" >&2; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the source: FILES random files of KIB KiB in FOLDERS folders, made once -----------------
SRC="$ROOT/source"
for i in $(seq "$FILES"); do
    d="$SRC/d$(printf %02d $(( i % FOLDERS )))"
    mkdir -p "$d"
    head -c "$(( KIB * 1024 ))" /dev/urandom > "$d/f$(printf %05d "$i").bin"
done
BYTES=$(( FILES * KIB * 1024 ))

# --- helpers ---------------------------------------------------------------------------------
wait_for() { # wait_for <file> <regex> <seconds>: until the file has a matching line
    local n=$(( $3 * 10 ))
    until grep -qE "$2" "$1" 2>/dev/null; do
        n=$(( n - 1 )); [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}
cpu_ticks() { # user+system clock ticks of a live process (0 if gone)
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
now() { date +%s.%N; }
TICK="$(getconf CLK_TCK)"
secs() { [ "$1" = NA ] && echo NA || awk -v t="$1" -v h="$TICK" 'BEGIN {printf "%.2f", t / h}'; }
drop_pid() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
stop_pid() { # SIGTERM, wait, forget
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    drop_pid "$1"
}
participant() { # participant <folder> <natsport> <proxyport>
    mkdir -p "$1/conf"
    printf 'srcType=local\nsrcPrefix=%s/\ndestDomain=http://127.0.0.1:%s\ndestBucket=bench-bucket\ndestAccessKey=bench-ak\ndestSecretKey=bench-sk-123456\ndestPrefix=\njobName=local_test\ntaskObjectCountLimit=%s\n' \
        "$SRC" "$3" "$TASK_LIMIT" > "$1/conf/local_job.cfg"
    printf 'workingDir=.\nworkerTaskThreadNum=%s\nqueueUrl=nats://127.0.0.1:%s\nqueueAckWaitSeconds=30\n' \
        "$THREADS" "$2" > "$1/conf/sys.properties"
}

# One run: run_one <workers> <name> <rep>. Appends a line to $ROOT/runs.tsv:
# workers rep ok wall master_cpu workers_cpu proxy_cpu tasks-per-worker note
run_one() {
    local n="$1" name="$2" rep="$3" d="$ROOT/$2" ok=1 note="" wall=NA
    mkdir -p "$d"
    "$BIN" sandbox --root "$d/data" --port 0 --bucket bench-bucket \
        --access-key bench-ak --secret-key bench-sk-123456 > "$d/sandbox.out" 2> "$d/sandbox.err" &
    local sandbox=$!; PIDS+=("$sandbox")
    wait_for "$d/sandbox.out" '^sandbox listening on ' 20 || { echo "sandbox did not start" >&2; exit 1; }
    local s3port; s3port="$(sed -n 's|^sandbox listening on http://127.0.0.1:||p' "$d/sandbox.out")"

    python3 "$PROXY" --upstream "127.0.0.1:$s3port" --rate-kib "$RATE" > "$d/proxy.out" 2> "$d/proxy.err" &
    local proxy=$!; PIDS+=("$proxy")
    wait_for "$d/proxy.out" '^listening on ' 20 || { echo "proxy did not start" >&2; exit 1; }
    local pport; pport="$(sed -n 's/^listening on //p' "$d/proxy.out")"

    "$NATS" -js -a 127.0.0.1 -p -1 -sd "$d/nats" > "$d/nats.log" 2>&1 &
    local nats=$!; PIDS+=("$nats")
    wait_for "$d/nats.log" 'Listening for client connections on' 20 || { echo "nats-server did not start" >&2; exit 1; }
    local nport; nport="$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$d/nats.log" | head -1)"

    participant "$d/master" "$nport" "$pport"
    local k workers=()
    for k in $(seq "$n"); do
        participant "$d/w$k" "$nport" "$pport"
        (cd "$d/w$k" && exec "$BIN" worker --host-name "w$k") > "$d/w$k/worker.out" 2>&1 &
        workers+=("$!"); PIDS+=("$!")
    done
    for k in $(seq "$n"); do
        wait_for "$d/w$k/logs/worker.log" 'worker started' 30 || note="w$k slow to start; "
    done

    (cd "$d/master" && "$BIN" submit > "$d/submit.out" 2>&1) || { ok=0; note+="submit failed; "; }
    local t0 t1 state="" deadline
    t0="$(now)"
    (cd "$d/master" && "$BIN" start > "$d/start.out" 2>&1) || { ok=0; note+="start failed; "; }
    deadline=$(( $(date +%s) + TIMEOUT ))
    while [ "$ok" = 1 ]; do
        state="$(cd "$d/master" && "$BIN" stat 2>&1 || true)"
        case "$state" in
            *JobState:Succeed*) break ;;
            *JobState:Failed*|*JobState:Abort*) ok=0; note+="$(grep -o 'JobState:[A-Za-z]*' <<<"$state" | head -1); " ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || { ok=0; note+="timeout ${TIMEOUT}s; "; break; }
        sleep 0.2
    done
    t1="$(now)"
    [ "$ok" = 1 ] && wall="$(echo "$t1 - $t0" | bc)"

    # CPU of the live processes, before they go: the master's service and the workers.
    local mticks=NA wticks=0 mpid="" p
    mpid="$(cat "$d/master/master/service.pid" 2>/dev/null || true)"
    [ -n "$mpid" ] && [ -e "/proc/$mpid/stat" ] && mticks="$(cpu_ticks "$mpid")"
    for p in "${workers[@]}"; do wticks=$(( wticks + $(cpu_ticks "$p") )); done
    local pticks; pticks="$(cpu_ticks "$proxy")"

    (cd "$d/master" && "$BIN" stop > "$d/stop.out" 2>&1) || note+="stop failed; "
    for p in "${workers[@]}"; do stop_pid "$p"; done
    if [ -n "$mpid" ]; then # the service ends on its own after stop
        for _ in $(seq 100); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
    fi
    stop_pid "$proxy"; stop_pid "$nats"; stop_pid "$sandbox"

    if [ "$ok" = 1 ] && ! diff -r -q "$SRC" "$d/data/bench-bucket" > "$d/diff.out" 2>&1; then
        ok=0; note+="bucket differs from source ($(wc -l < "$d/diff.out") lines of diff); "
    fi
    rm -rf "$d/data" "$d/nats"

    local tasks=()
    for k in $(seq "$n"); do tasks+=("$(grep -c 'task started' "$d/w$k/logs/worker.log" 2>/dev/null || true)"); done
    # Anything but INFO in the logs: the master's (and its stderr), the workers', the server's.
    local errs stderr nwarn
    errs="$(cat "$d/master/logs/ossimport2.log" "$d"/w*/logs/worker.log 2>/dev/null | grep -cE ' (ERROR|WARN) ' || true)"
    stderr="$(grep -c . "$d/master/logs/import.log" 2>/dev/null || true)"
    nwarn="$(grep -cE '\[(WRN|ERR|FTL)\]' "$d/nats.log" 2>/dev/null || true)"
    [ "${errs:-0}" = 0 ] || note+="$errs ERROR/WARN lines in ossimport2.log/worker.log; "
    [ "${stderr:-0}" = 0 ] || note+="$stderr lines in the master's logs/import.log; "
    [ "${nwarn:-0}" = 0 ] || note+="$nwarn WRN/ERR lines in nats-server's log; "
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$rep" "$ok" "$wall" \
        "$(secs "$mticks")" "$(secs "$wticks")" "$(secs "$pticks")" \
        "$(IFS=/; echo "${tasks[*]}")" "${note%; }" >> "$ROOT/runs.tsv"
    echo "rep $rep, $n worker(s): ok=$ok wall=${wall}s tasks=$(IFS=/; echo "${tasks[*]}") ${note:+($note)}" >&2
}

: > "$ROOT/runs.tsv"
for rep in $(seq "$REPS"); do
    if [ $(( rep % 2 )) = 1 ]; then order=("${CONFIGS[@]}"); else order=(4 1); fi
    for n in "${order[@]}"; do run_one "$n" "rep$rep-w$n" "$rep"; done
done

# --- the report ------------------------------------------------------------------------------
median() { sort -n | awk '{v[NR]=$1} END {if (NR==0) print "NA"; else if (NR%2) printf "%.2f\n", v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
calc() { awk "BEGIN {printf \"%.2f\", $1}"; }
MIB="$(calc "$BYTES / 1048576")"
declare -A MED TPUT
report() {
    local dirty=""
    git -C "$PWD" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || dirty=" (plus uncommitted changes in src/ or Cargo files)"
    echo "# Distributed mode: 1 worker vs 4 workers"
    echo
    echo "Generated by \`$CMDLINE\` (release binary; sandbox S3 server, throttling proxy and NATS JetStream on 127.0.0.1)."
    echo
    echo "- git rev: $(git -C "$PWD" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r); nats-server $("$NATS" --version 2>/dev/null | sed 's/^nats-server: *//'); $(python3 --version)"
    echo "- workload: $FILES files x $KIB KiB (random bytes) in $FOLDERS folders = $MIB MiB; source, bucket and NATS store on tmpfs ($PARENT)"
    echo "- every participant: taskObjectCountLimit=$TASK_LIMIT, workerTaskThreadNum=$THREADS, queueAckWaitSeconds=30"
    echo "- destination through bench/throttle_proxy.py: $RATE KiB/s per TCP connection, upload direction only"
    echo "- $REPS repetitions, each running 1 worker and 4 workers (alternating which goes first); a fresh sandbox, proxy, NATS server and store, and folders for every run"
    echo "- wall = from just before \`start\` to the \`stat\` (polled every 0.2 s) that shows JobState:Succeed; the workers were started, and had joined the queue, before \`submit\`; every run's bucket was compared with the source (\`diff -r -q\`)"
    echo "- logs checked after every run: ERROR/WARN lines in the master's logs/ossimport2.log and the workers' logs/worker.log, anything in the master's logs/import.log (its stderr), WRN/ERR lines of nats-server; the notes column shows any (empty: none)"
    echo "- CPU = user+system seconds (from /proc/<pid>/stat, taken at Succeed) of the master's service, of all workers together, and of the proxy; tasks per worker = \`task started\` lines in each worker's logs/worker.log"
    local n
    for n in "${CONFIGS[@]}"; do
        local okc total
        okc="$(awk -F'\t' -v n="$n" '$1==n && $3==1' "$ROOT/runs.tsv" | wc -l)"
        total="$(awk -F'\t' -v n="$n" '$1==n' "$ROOT/runs.tsv" | wc -l)"
        MED[$n]="$(awk -F'\t' -v n="$n" '$1==n && $3==1 {print $4}' "$ROOT/runs.tsv" | median)"
        if [ "${MED[$n]}" = NA ]; then TPUT[$n]=NA; else TPUT[$n]="$(calc "$MIB / ${MED[$n]}")"; fi
        echo
        echo "## $n worker$([ "$n" = 1 ] || echo s)"
        echo
        echo "Runs ok: $okc of $total. Median wall: **${MED[$n]} s**. Median throughput: **${TPUT[$n]} MiB/s** ($MIB MiB / median wall)."
        echo
        echo "| rep | ok | wall s | MiB/s | master CPU s | workers CPU s | proxy CPU s | tasks per worker | notes |"
        echo "|----:|:--:|-------:|------:|-------------:|--------------:|------------:|:-----------------|:------|"
        awk -F'\t' -v n="$n" -v mib="$MIB" '$1==n {
            w = ($3==1) ? sprintf("%.2f", $4) : "-"
            t = ($3==1) ? sprintf("%.2f", mib/$4) : "-"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, ($3==1?"yes":"no"), w, t, $5, $6, $7, $8, $9
        }' "$ROOT/runs.tsv"
    done
    echo
    echo "## Scaling"
    echo
    if [ "${TPUT[1]}" = NA ] || [ "${TPUT[4]}" = NA ]; then
        echo "- no ratio: a configuration had no successful run"
        return
    fi
    local ideal1 ideal4 pmax
    ideal1="$(calc "$MIB * 1024 / ($THREADS * $RATE)")"
    ideal4="$(calc "$ideal1 / 4")"
    RATIO="$(calc "${MED[1]} / ${MED[4]}")"
    echo "- median throughput, 4 workers / 1 worker: **${RATIO}×** (${TPUT[4]} / ${TPUT[1]} MiB/s)"
    echo "- theoretical ceiling: **4.00×** (4 x $THREADS connections at $RATE KiB/s against $THREADS)"
    echo "- at exactly $THREADS x $RATE KiB/s per worker the upload alone takes $ideal1 s (1 worker) and $ideal4 s (4 workers); the measured medians are $(calc "${MED[1]} - $ideal1") s and $(calc "${MED[4]} - $ideal4") s longer. That remainder is everything but the rate-limited upload (listing, queue round trips, the job's startup, the last tasks' tail, and with 4 workers an uneven split of the tasks), and it is what keeps the ratio from 4.00×"
    echo "- split of the tasks in the 4-worker runs (\`task started\` lines per worker): $(awk -F'\t' '$1==4 && $3==1 {printf "%s%s", sep, $8; sep=", "}' "$ROOT/runs.tsv"); an even split is a quarter each, and the busiest worker sets the wall"
    pmax="$(awk -F'\t' '$3==1 && $4>0 {u=100*$7/$4; if (u>m) m=u} END {printf "%.0f", m}' "$ROOT/runs.tsv")"
    echo "- the proxy used at most ${pmax}% of one core in any successful run (its CPU seconds / the run's wall; the machine has $(nproc) cores)"
}
report | tee "$OUT"
awk -F'\t' '$3!=1 {bad=1} END {exit bad}' "$ROOT/runs.tsv" || { echo "some runs failed; see $OUT" >&2; exit 1; }
