#!/usr/bin/env bash
# Benchmarks ossimport against rclone, aws-cli and s3sync on the same machine, in the same
# run, against ONE sandbox S3 server on 127.0.0.1 (issue 5, items 1-3).
#
#   bench/run.sh [--quick] [--reps N] [--workloads W1,W2,W3,W4S,W4L] [--tools ossimport,rclone,aws,s3sync]
#                [--no-install] [--no-build] [--out FILE]
#
# Workloads (generated once into bench/.cache/, or $BENCH_CACHE):
#   W1  10,000 files of 16 KiB in 50 folders       (--quick: 1,000 files)
#   W2  4 files of 256 MiB (multipart)             (--quick: 2 x 64 MiB)
#   W3  1,000,000 empty files, scan only           (--quick: 50,000)
#       ossimport: importSince in the future, so the master lists and splits everything and
#       sends nothing; the floor is `find DIR -type f | wc -l`. Peers are not run on W3.
#   W4S the W1 set as objects in a second s3s-fs (the source), copied bucket to bucket
#   W4L the W2 set as objects in that source, copied bucket to bucket (multipart, Range GETs)
#       ossimport: srcType=s3; rclone: `copy :s3:src :s3:dst`; s3sync: s3:// to s3://;
#       aws-cli has no copy between two endpoints and is not run on W4.
# Both servers keep their data on tmpfs (/dev/shm, or $BENCH_DATA) so disk state does not
# blur the figures.
#
# Every tool runs every workload --reps times (default 3), tools alternating (the order
# rotates each repetition), each run into a fresh bucket. Wall time, user+sys CPU and peak RSS
# come from /usr/bin/time -v (ossimport: `submit` + the `serve` process, timed from `submit`
# to JobState:Succeed as a user runs it). The server's CPU per run is read from /proc.
# Results: bench/results.md (--quick: bench/results-quick.md), also printed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR="$PWD"
BENCH_DIR="$ROOT_DIR/bench"

QUICK=0; REPS=3; WORKLOADS="W1,W2,W3,W4S,W4L"; TOOLS="ossimport,rclone,aws,s3sync"
INSTALL=1; BUILD=1; OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --reps) REPS="$2"; shift ;;
        --workloads) WORKLOADS="$2"; shift ;;
        --tools) TOOLS="$2"; shift ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    W1_FILES=1000; W1_DIRS=50; W1_KIB=16
    W2_FILES=2; W2_MIB=64
    W3_FILES=50000; W3_DIRS=50
    MODE=quick; OUT="${OUT:-$BENCH_DIR/results-quick.md}"; RUN_TIMEOUT=600
else
    W1_FILES=10000; W1_DIRS=50; W1_KIB=16
    W2_FILES=4; W2_MIB=256
    W3_FILES=1000000; W3_DIRS=1000
    MODE=full; OUT="${OUT:-$BENCH_DIR/results.md}"; RUN_TIMEOUT=1800
fi
CONCURRENCY=60          # the original's workerTaskThreadNum default
PART_MIB=50             # multipartUploadPartSize default
THRESHOLD_MIB=150       # multipartUploadThreshold default
PARTS_PER_FILE=3        # uploadThreadNumPerLargeFile default
AK=bench-ak
SK=bench-sk-123456

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { command -v "$1" > /dev/null 2>&1; }

# ---------------------------------------------------------------- binary
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT_DIR/$TARGET_DIR" ;; esac
BIN="$TARGET_DIR/release/ossimport"
BUILD_NOTE="used as found"
if [ "$BUILD" = 1 ]; then
    log "cargo build --release -j ${BENCH_BUILD_JOBS:-1}"
    if cargo build --release -j "${BENCH_BUILD_JOBS:-1}" --quiet 2> "$BENCH_DIR/.build.log"; then
        BUILD_NOTE="built by this run"
    elif [ -x "$BIN" ]; then
        BUILD_NOTE="cargo build FAILED (see bench/.build.log); the existing binary was used"
        log "WARNING: $BUILD_NOTE"
    else
        log "cargo build failed and there is no binary:"; cat "$BENCH_DIR/.build.log" >&2; exit 1
    fi
fi
[ -x "$BIN" ] || { log "missing $BIN"; exit 1; }
OSS_VERSION="$("$BIN" version 2>/dev/null || echo unknown)"
BIN_MTIME="$(date -r "$BIN" '+%Y-%m-%d %H:%M:%S')"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted')"

# ---------------------------------------------------------------- peers
export PATH="$PATH:$HOME/.cargo/bin"
# The environment may set a CA bundle for https; the peers talk plain http to 127.0.0.1.
PEER_ENV=(env -u AWS_CA_BUNDLE -u AWS_PROFILE -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy)
# Prefer the Debian packages (what the issue installs); fall back to whatever is on PATH.
RCLONE="$(command -v /usr/bin/rclone rclone 2>/dev/null | head -1)"
AWS="$(command -v /usr/bin/aws aws 2>/dev/null | head -1)"
S3SYNC="$(command -v s3sync 2>/dev/null | head -1)"
want() { case ",$TOOLS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if [ "$INSTALL" = 1 ]; then
    if want rclone && [ -z "$RCLONE" ]; then
        log "installing rclone (apt)"; apt-get install -y rclone > "$BENCH_DIR/.install-rclone.log" 2>&1 || true
        RCLONE="$(command -v /usr/bin/rclone rclone 2>/dev/null | head -1)"
    fi
    if want aws && [ -z "$AWS" ]; then
        log "installing awscli (apt)"; apt-get install -y awscli > "$BENCH_DIR/.install-aws.log" 2>&1 || true
        AWS="$(command -v /usr/bin/aws aws 2>/dev/null | head -1)"
    fi
    if want s3sync && [ -z "$S3SYNC" ]; then
        log "installing s3sync 1.62.4 (cargo install, several minutes)"
        cargo install s3sync@1.62.4 --locked -j "${BENCH_BUILD_JOBS:-1}" > "$BENCH_DIR/.install-s3sync.log" 2>&1 \
            || cargo install s3sync@1.62.4 -j "${BENCH_BUILD_JOBS:-1}" >> "$BENCH_DIR/.install-s3sync.log" 2>&1 || true
        S3SYNC="$(command -v s3sync 2>/dev/null | head -1)"
    fi
fi
version_of() { # version_of <binary> <args...>: first line of its version output, or "missing"
    local v=""
    [ -n "$1" ] && v="$("${PEER_ENV[@]}" "$@" 2>&1 | sed -n 1p)"
    echo "${v:-missing}${1:+ ($1)}"
}
RCLONE_VERSION="$(version_of "$RCLONE" version)"
AWS_VERSION="$(version_of "$AWS" --version)"
S3SYNC_VERSION="$(version_of "$S3SYNC" --version)"

# ---------------------------------------------------------------- workloads (cached)
CACHE="${BENCH_CACHE:-$BENCH_DIR/.cache}"
mkdir -p "$CACHE"
W1_DIR="$CACHE/w1-${W1_FILES}x${W1_KIB}k-${W1_DIRS}d"
W2_DIR="$CACHE/w2-${W2_FILES}x${W2_MIB}m"
W3_DIR="$CACHE/w3-${W3_FILES}x0-${W3_DIRS}d"
gen() { # gen <dir> <files> <dirs> <bytes each> : random content, dNN/fNNNNNN
    [ -f "$1.done" ] && return 0
    log "generating $1"
    rm -rf "$1"
    python3 - "$1" "$2" "$3" "$4" <<'PY' || { log "generation failed"; exit 1; }
import os, sys
root, files, dirs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
per = -(-files // dirs)
for d in range(dirs):
    os.makedirs(os.path.join(root, "d%04d" % d), exist_ok=True)
for i in range(files):
    p = os.path.join(root, "d%04d" % (i // per), "f%07d" % i)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    left = size
    while left:
        n = min(left, 8 << 20)
        os.write(fd, os.urandom(n))
        left -= n
    os.close(fd)
PY
    touch "$1.done"
}
want_w() { case ",$WORKLOADS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
{ want_w W1 || want_w W4S; } && gen "$W1_DIR" "$W1_FILES" "$W1_DIRS" $(( W1_KIB * 1024 ))
{ want_w W2 || want_w W4L; } && gen "$W2_DIR" "$W2_FILES" 1 $(( W2_MIB * 1024 * 1024 ))
want_w W3 && gen "$W3_DIR" "$W3_FILES" "$W3_DIRS" 0

# ---------------------------------------------------------------- the server
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ossimport-bench.XXXXXX")"
DATA_PARENT="${BENCH_DATA:-/dev/shm}"
[ -d "$DATA_PARENT" ] && [ -w "$DATA_PARENT" ] || DATA_PARENT="$WORK"
SHM="$(mktemp -d "$DATA_PARENT/ossimport-bench.XXXXXX")"
DATA="$SHM/data"
SRC_DATA="$SHM/src-data"
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "${SANDBOX_PID:-}" ] && kill "$SANDBOX_PID" 2>/dev/null
    [ -n "${SRC_PID:-}" ] && kill "$SRC_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# start_sandbox <name> <data dir> <bucket>: a sandbox on a free port; sets STARTED_PID and
# STARTED_ENDPOINT, or stops the run with the server's own words.
start_sandbox() {
    "$BIN" sandbox --root "$2" --port 0 --bucket "$3" --access-key "$AK" --secret-key "$SK" \
        --request-counts "$WORK/$1.counts" > "$WORK/$1.out" 2> "$WORK/$1.err" &
    STARTED_PID=$!
    for _ in $(seq 100); do grep -q listening "$WORK/$1.out" 2>/dev/null && break; sleep 0.1; done
    STARTED_ENDPOINT="$(sed -n 's/^sandbox listening on //p' "$WORK/$1.out")"
    [ -n "$STARTED_ENDPOINT" ] || { log "the $1 sandbox did not start:"; cat "$WORK/$1.err" >&2; exit 1; }
}
start_sandbox destination "$DATA" bench-warmup
SANDBOX_PID=$STARTED_PID; ENDPOINT=$STARTED_ENDPOINT
log "sandbox $ENDPOINT (pid $SANDBOX_PID), work dir $WORK"
SRC_ENDPOINT=""
if want_w W4S || want_w W4L; then
    # The source cloud: a second s3s-fs serving the W1 and W2 sets as objects, each at the
    # root of its own bucket (s3s-fs answers a HEAD of a "folder" key with a slow 500, which
    # rclone sends for a prefix). The objects are uploaded, not copied in as files: s3s-fs
    # keeps a stored ETag per uploaded object, and without it hashes the whole file on every
    # GET (each 50 MiB part of a 256 MiB object would cost the server 256 MiB of MD5).
    mkdir -p "$SRC_DATA/src-w4s" "$SRC_DATA/src-w4l"
    start_sandbox source "$SRC_DATA" src-w4s
    SRC_PID=$STARTED_PID; SRC_ENDPOINT=$STARTED_ENDPOINT
    log "source sandbox $SRC_ENDPOINT (pid $SRC_PID), data in $SRC_DATA"
    populate() { # populate <bucket> <dir>: upload dir into the source bucket with ossimport
        local setup="$WORK/populate-$1"
        mkdir -p "$setup/conf"
        printf 'srcType=local\nsrcPrefix=%s/\ndestDomain=%s\ndestBucket=%s\ndestAccessKey=%s\ndestSecretKey=%s\nisAuditAfterImport=false\n' \
            "$2" "$SRC_ENDPOINT" "$1" "$AK" "$SK" > "$setup/conf/local_job.cfg"
        printf 'workingDir=.\nworkerTaskThreadNum=%s\n' "$CONCURRENCY" > "$setup/conf/sys.properties"
        (cd "$setup" && "$BIN" submit > /dev/null && "$BIN" start > /dev/null) || { log "populating $1 failed"; exit 1; }
        until (cd "$setup" && "$BIN" stat 2>/dev/null | grep -q 'JobState:Succeed'); do sleep 0.5; done
        (cd "$setup" && "$BIN" stop > /dev/null)
        log "source bucket $1: $(find "$SRC_DATA/$1" -type f | wc -l) objects"
    }
    want_w W4S && populate src-w4s "$W1_DIR"
    want_w W4L && populate src-w4l "$W2_DIR"
fi
CLK_TCK="$(getconf CLK_TCK)"
# Requests the destination served so far (it rewrites the file every 200 ms while it counts).
dest_requests() { sed -n 's/^requests=//p' "$WORK/destination.counts" 2>/dev/null || echo 0; }
# Both servers' CPU: on W4 the source serves every byte too.
server_ticks() {
    local t=0 pid
    for pid in $SANDBOX_PID ${SRC_PID:-}; do
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    echo "$t"
}

# Peer configuration files.
: > "$WORK/rclone.conf"
cat > "$WORK/aws.config" <<CFG
[default]
region = us-east-1
s3 =
    max_concurrent_requests = $CONCURRENCY
    max_queue_size = 10000
    multipart_threshold = ${THRESHOLD_MIB}MB
    multipart_chunksize = ${PART_MIB}MB
    addressing_style = path
CFG

RESULTS="$WORK/results.tsv"
printf 'workload\ttool\trep\twall\tuser\tsys\trss_kb\tserver_cpu\tstatus\trequests\n' > "$RESULTS"
CMDS="$WORK/commands.tsv"
: > "$CMDS"
note_cmd() { grep -qF "$1	" "$CMDS" 2>/dev/null || printf '%s\t%s\n' "$1" "$2" >> "$CMDS"; }
now() { date +%s.%N; }
tv() { sed -n "s/.*$2: //p" "$1" 2>/dev/null | head -1; }

# ---------------------------------------------------------------- one run
# run_one <workload> <tool> <rep>; appends one line to $RESULTS.
run_one() {
    local w="$1" tool="$2" rep="$3"
    local src files bytes bucket run
    case "$w" in
        W1) src="$W1_DIR"; files=$W1_FILES ;;
        W2) src="$W2_DIR"; files=$W2_FILES ;;
        W3) src="$W3_DIR"; files=$W3_FILES ;;
        W4S) src="s3://src-w4s"; files=$W1_FILES ;;
        W4L) src="s3://src-w4l"; files=$W2_FILES ;;
    esac
    local src_bucket="${src#s3://}"
    bucket="$(echo "b-$w-$tool-$rep" | tr 'A-Z' 'a-z')"
    run="$WORK/runs/$bucket"
    mkdir -p "$run" "$DATA/$bucket"
    local t0 t1 rc=0 status=ok user=0 sys=0 rss=0 tfile="$run/time.txt" s0 s1
    s0="$(server_ticks)"
    local q0 q1
    q0="$(dest_requests)"
    case "$tool" in
    ossimport)
        mkdir -p "$run/conf"
        local since=0 expect=$files
        if [ "$w" = W3 ]; then since=$(( $(date +%s) + 10 * 365 * 86400 )); expect=0; fi
        local src_conf="srcType=local
srcPrefix=$src/"
        case "$w" in W4*) src_conf="srcType=s3
srcDomain=$SRC_ENDPOINT
srcBucket=$src_bucket
srcPrefix=
srcAccessKey=$AK
srcSecretKey=$SK" ;; esac
        cat > "$run/conf/local_job.cfg" <<CFG
jobName=local_test
$src_conf
destDomain=$ENDPOINT
destBucket=$bucket
destAccessKey=$AK
destSecretKey=$SK
destPrefix=data/
importSince=$since
CFG
        printf 'workingDir=.\nworkerTaskThreadNum=%s\n' "$CONCURRENCY" > "$run/conf/sys.properties"
        note_cmd "ossimport $w" "cd PKG && ossimport submit && ossimport serve  # conf/local_job.cfg: $(echo "$src_conf" | tr '\n' ' ' | sed "s/$SK/SK/; s/$AK/AK/") destDomain=$ENDPOINT destBucket=BUCKET destPrefix=data/ importSince=$since (defaults: multipartUploadThreshold=${THRESHOLD_MIB}m multipartUploadPartSize=${PART_MIB}m uploadThreadNumPerLargeFile=$PARTS_PER_FILE); conf/sys.properties: workingDir=. workerTaskThreadNum=$CONCURRENCY; timed from submit until \`ossimport stat\` shows JobState:Succeed"
        t0="$(now)"
        if ! (cd "$run" && /usr/bin/time -v -o "$run/time-submit.txt" "$BIN" submit > "$run/submit.out" 2>&1); then
            status="failed(submit)"; t1="$(now)"
        else
            (cd "$run" && exec /usr/bin/time -v -o "$tfile" "$BIN" serve > "$run/serve.out" 2>&1) &
            SERVE_PID=$!
            local deadline=$(( $(date +%s) + RUN_TIMEOUT )) state=""
            while :; do
                state="$(cd "$run" && "$BIN" stat 2>/dev/null | sed -n 's/^JobState://p')"
                case "$state" in Succeed|Failed|Abort) break ;; esac
                if ! kill -0 "$SERVE_PID" 2>/dev/null; then state="service-exited"; break; fi
                if [ "$(date +%s)" -ge "$deadline" ]; then state="timeout"; break; fi
                sleep 0.05
            done
            t1="$(now)"
            (cd "$run" && "$BIN" stop > /dev/null 2>&1)
            wait "$SERVE_PID" 2>/dev/null; SERVE_PID=""
            [ "$state" = Succeed ] || status="failed($state)"
        fi
        user="$(awk '{s+=$1} END {print s+0}' <(tv "$tfile" 'User time (seconds)'; tv "$run/time-submit.txt" 'User time (seconds)'))"
        sys="$(awk '{s+=$1} END {print s+0}' <(tv "$tfile" 'System time (seconds)'; tv "$run/time-submit.txt" 'System time (seconds)'))"
        rss="$(awk '$1>m {m=$1} END {print m+0}' <(tv "$tfile" 'Maximum resident set size (kbytes)'; tv "$run/time-submit.txt" 'Maximum resident set size (kbytes)'))"
        files=$expect
        ;;
    find)
        # The stat floor: a migration must know every file's size and mtime.
        note_cmd "find $w" "sh -c \"find $src -type f -printf '%s %T@\\n' | wc -l\""
        t0="$(now)"
        timeout "$RUN_TIMEOUT" /usr/bin/time -v -o "$tfile" sh -c "find '$src' -type f -printf '%s %T@\\n' | wc -l" > "$run/out" 2> "$run/err" || rc=$?
        t1="$(now)"
        [ "$rc" = 0 ] && [ "$(cat "$run/out")" = "$W3_FILES" ] || status="failed(rc=$rc)"
        user="$(tv "$tfile" 'User time (seconds)')"; sys="$(tv "$tfile" 'System time (seconds)')"
        rss="$(tv "$tfile" 'Maximum resident set size (kbytes)')"
        files=0
        ;;
    rclone|aws|s3sync)
        local -a cmd
        case "$tool" in
        rclone)
            [ -n "$RCLONE" ] || { status=missing; }
            local rsrc="$src/"
            # The source cloud as an rclone connection string; the destination from the env.
            case "$w" in W4*) rsrc=":s3,provider=Other,endpoint='$SRC_ENDPOINT',region=us-east-1,access_key_id=$AK,secret_access_key=$SK,force_path_style=true:$src_bucket" ;; esac
            cmd=("${PEER_ENV[@]}" RCLONE_CONFIG="$WORK/rclone.conf"
                RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT="$ENDPOINT" RCLONE_S3_REGION=us-east-1
                RCLONE_S3_ACCESS_KEY_ID="$AK" RCLONE_S3_SECRET_ACCESS_KEY="$SK" RCLONE_S3_FORCE_PATH_STYLE=true
                "$RCLONE" copy "$rsrc" ":s3:$bucket/data" --transfers "$CONCURRENCY" --checkers "$CONCURRENCY"
                --s3-chunk-size "${PART_MIB}M" --s3-upload-cutoff "${THRESHOLD_MIB}M"
                --s3-upload-concurrency "$PARTS_PER_FILE" --s3-no-check-bucket --stats 0)
            ;;
        aws)
            [ -n "$AWS" ] || { status=missing; }
            cmd=("${PEER_ENV[@]}" AWS_CONFIG_FILE="$WORK/aws.config" AWS_SHARED_CREDENTIALS_FILE=/dev/null
                AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" AWS_EC2_METADATA_DISABLED=true
                "$AWS" s3 cp --recursive "$src/" "s3://$bucket/data/" --endpoint-url "$ENDPOINT"
                --only-show-errors --no-progress)
            ;;
        s3sync)
            [ -n "$S3SYNC" ] || { status=missing; }
            local -a ssrc=()
            case "$w" in W4*) ssrc=(--source-access-key "$AK" --source-secret-access-key "$SK"
                --source-region us-east-1 --source-endpoint-url "$SRC_ENDPOINT" --source-force-path-style) ;; esac
            cmd=("${PEER_ENV[@]}" "$S3SYNC" "${ssrc[@]}" --target-access-key "$AK" --target-secret-access-key "$SK"
                --target-region us-east-1 --target-endpoint-url "$ENDPOINT" --target-force-path-style
                --worker-size "$CONCURRENCY" --multipart-threshold "${THRESHOLD_MIB}MiB"
                --multipart-chunksize "${PART_MIB}MiB" "$src/" "s3://$bucket/data/")
            ;;
        esac
        local shown="${cmd[*]}"
        shown="${shown//$src/SRC}"; shown="${shown//$bucket/BUCKET}"; shown="${shown//$WORK/WORK}"
        shown="${shown//  / $tool }"
        note_cmd "$tool $w" "$shown"
        if [ "$status" = ok ]; then
            t0="$(now)"
            timeout "$RUN_TIMEOUT" /usr/bin/time -v -o "$tfile" "${cmd[@]}" > "$run/out" 2> "$run/err" || rc=$?
            t1="$(now)"
            [ "$rc" = 0 ] || status="failed(rc=$rc)"
            user="$(tv "$tfile" 'User time (seconds)')"; sys="$(tv "$tfile" 'System time (seconds)')"
            rss="$(tv "$tfile" 'Maximum resident set size (kbytes)')"
        else
            t0=0; t1=0
        fi
        ;;
    esac
    s1="$(server_ticks)"
    sleep 0.3
    q1="$(dest_requests)"
    # Every object must be on the server, or the run does not count.
    if [ "$status" = ok ] && [ "$tool" != find ]; then
        local got got_bytes want_bytes=0
        got="$(find "$DATA/$bucket" -type f | wc -l)"
        got_bytes="$(find "$DATA/$bucket" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
        case "$w" in W1|W4S) want_bytes=$(( W1_FILES * W1_KIB * 1024 )) ;; esac
        case "$w" in W2|W4L) want_bytes=$(( W2_FILES * W2_MIB * 1024 * 1024 )) ;; esac
        if [ "$got" != "$files" ]; then status="incomplete($got/$files)"
        elif [ "$got_bytes" != "$want_bytes" ]; then status="wrong-bytes($got_bytes/$want_bytes)"; fi
    fi
    if [ "$status" != ok ] && [ "$status" != missing ]; then
        mkdir -p "$WORK/failed"; cp -r "$run" "$WORK/failed/" 2>/dev/null
        { echo "== $w $tool rep $rep: $status"; tail -5 "$run"/*.out "$run"/out "$run"/err 2>/dev/null; } >> "$BENCH_DIR/.failures.log"
    fi
    awk -v w="$w" -v t="$tool" -v r="$rep" -v t0="$t0" -v t1="$t1" -v u="${user:-0}" -v s="${sys:-0}" \
        -v m="${rss:-0}" -v s0="$s0" -v s1="$s1" -v hz="$CLK_TCK" -v st="$status" -v q="$(( q1 - q0 ))" \
        'BEGIN {printf "%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%.2f\t%s\t%s\n", w, t, r, t1 - t0, u, s, m, (s1 - s0) / hz, st, q}' >> "$RESULTS"
    log "$(tail -1 "$RESULTS" | tr '\t' ' ')"
    # Fresh bucket each run: drop this one (objects and s3s-fs's sidecar files) before the next.
    rm -rf "$DATA/$bucket" "$run"
    # s3s-fs keeps a sidecar per object in its root (.bucket-<base64url>.object-*.json);
    # left behind, every later run writes into an ever larger folder and slows down.
    find "$DATA" -maxdepth 1 -name ".bucket-$(printf %s "$bucket" | base64 -w0 | tr '+/' '-_' | tr -d '=').*" -delete
    find "$DATA" -maxdepth 1 -name ".bucket-$bucket.*" -delete 2>/dev/null
    find "$DATA" -maxdepth 1 -name ".upload*" -delete 2>/dev/null
    sync
}

# ---------------------------------------------------------------- the runs
: > "$BENCH_DIR/.failures.log"
IFS=, read -r -a TOOL_LIST <<< "$TOOLS"
IFS=, read -r -a WL_LIST <<< "$WORKLOADS"
for w in "${WL_LIST[@]}"; do
    if [ "$w" = W3 ]; then tools=(ossimport find); else
        tools=(); for t in "${TOOL_LIST[@]}"; do
            [ "$t" = find ] && continue
            case "$w:$t" in W4*:aws) continue ;; esac
            tools+=("$t")
        done
    fi
    n=${#tools[@]}
    for rep in $(seq "$REPS"); do
        for i in $(seq 0 $(( n - 1 ))); do
            t="${tools[$(( (i + rep - 1) % n ))]}"   # rotate the order each repetition
            run_one "$w" "$t" "$rep"
        done
    done
done

# ---------------------------------------------------------------- report
python3 "$BENCH_DIR/report.py" --results "$RESULTS" --commands "$CMDS" --out "$OUT" \
    --mode "$MODE" --w1 "$W1_FILES,$W1_KIB,$W1_DIRS" --w2 "$W2_FILES,$W2_MIB" --w3 "$W3_FILES,$W3_DIRS" \
    --meta "ossimport=$OSS_VERSION (git $GIT_REV, binary built $BIN_MTIME, $BUILD_NOTE)" \
    --meta "rclone=$RCLONE_VERSION" --meta "aws-cli=$AWS_VERSION" --meta "s3sync=$S3SYNC_VERSION" \
    --meta "server=ossimport sandbox (s3s-fs) on $ENDPOINT, data in $DATA${SRC_ENDPOINT:+; W4 source: a second sandbox on $SRC_ENDPOINT, data in $SRC_DATA}" \
    --meta "machine=$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" \
    --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" --meta "reps=$REPS"
cp "$RESULTS" "${OUT%.md}.tsv"
log "report: $OUT (raw: ${OUT%.md}.tsv)"
