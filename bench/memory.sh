#!/usr/bin/env bash
# Peak RSS of the import service for a few large files against the sandbox, as a user runs
# it (release binary, default 50m parts, uploadThreadNumPerLargeFile=3), next to a baseline
# run of tiny files; the difference divided by the number of large files is the memory one
# large file costs.
#
#   bench/memory.sh [files=4] [size_mib=256]
set -euo pipefail
cd "$(dirname "$0")/.."
FILES="${1:-4}"
SIZE_MIB="${2:-256}"
# shellcheck source=bench/lib.sh
. bench/lib.sh

run() { # run <name> <file count> <size MiB>
    local dir="$WORK/$1"
    mkdir -p "$dir/conf" "$dir/src"
    for i in $(seq "$2"); do head -c "$(( $3 * 1024 * 1024 ))" /dev/urandom > "$dir/src/f$i.bin"; done
    cat > "$dir/conf/local_job.cfg" <<CFG
srcPrefix=$dir/src/
destDomain=$ENDPOINT
destBucket=bench-bucket
destAccessKey=bench-ak
destSecretKey=bench-sk-123456
destPrefix=$1/
CFG
    printf 'workingDir=.\n' > "$dir/conf/sys.properties"
    (cd "$dir" && "$BIN" submit > /dev/null)
    # The service in the foreground under time(1); stopped once the job has finished.
    (cd "$dir" && /usr/bin/time -v "$BIN" serve 2> "$dir/time.txt") &
    local pid=$!
    until (cd "$dir" && "$BIN" stat 2>/dev/null | grep -qE 'JobState:(Succeed|Failed)'); do sleep 0.5; done
    (cd "$dir" && "$BIN" stop > /dev/null)
    wait "$pid" || true
    sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.txt"
}

BASE_KB="$(run baseline 2 0)"
BIG_KB="$(run large "$FILES" "$SIZE_MIB")"
echo "baseline peak RSS: $(( BASE_KB / 1024 )) MiB"
echo "$FILES x $SIZE_MIB MiB peak RSS: $(( BIG_KB / 1024 )) MiB"
echo "per large file: $(( (BIG_KB - BASE_KB) / FILES / 1024 )) MiB (3 parts of 50 MiB in flight each)"
