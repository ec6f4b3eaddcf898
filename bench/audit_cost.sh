#!/usr/bin/env bash
# What detailed verification costs: the same upload (4 x 256 MiB by default, multipart, and
# 2,000 x 16 KiB) with auditMode=general and auditMode=detailed, alternating, 3 runs each;
# prints the median wall time (submit to Succeed, release binary, sandbox on 127.0.0.1).
#
#   bench/audit_cost.sh [large_files=4] [large_mib=256] [small_files=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
LARGE="${1:-4}"; LARGE_MIB="${2:-256}"; SMALL="${3:-2000}"
# shellcheck source=bench/lib.sh
. bench/lib.sh

mkdir -p "$WORK/large" "$WORK/small"
for i in $(seq "$LARGE"); do head -c "$(( LARGE_MIB * 1024 * 1024 ))" /dev/urandom > "$WORK/large/f$i.bin"; done
for i in $(seq "$SMALL"); do mkdir -p "$WORK/small/d$(( i % 20 ))"; head -c 16384 /dev/urandom > "$WORK/small/d$(( i % 20 ))/f$i"; done

run() { # run <src> <auditMode> <n> -> seconds
    local dir="$WORK/pkg-$2-$3"
    mkdir -p "$dir/conf"
    printf 'srcPrefix=%s/\ndestDomain=%s\ndestBucket=bench-bucket\ndestAccessKey=bench-ak\ndestSecretKey=bench-sk-123456\ndestPrefix=%s/\nauditMode=%s\n' \
        "$1" "$ENDPOINT" "$(basename "$dir")" "$2" > "$dir/conf/local_job.cfg"
    printf 'workingDir=.\n' > "$dir/conf/sys.properties"
    local start end
    start="$(date +%s.%N)"
    (cd "$dir" && "$BIN" submit > /dev/null && "$BIN" start > /dev/null)
    until (cd "$dir" && "$BIN" stat 2>/dev/null | grep -qE 'JobState:(Succeed|Failed)'); do sleep 0.2; done
    end="$(date +%s.%N)"
    (cd "$dir" && "$BIN" stop > /dev/null)
    echo "$end - $start" | bc
}
median() { sort -n | sed -n 2p; }

for src in large small; do
    g=(); d=()
    for n in 1 2 3; do
        g+=("$(run "$WORK/$src" general "$src$n")")
        d+=("$(run "$WORK/$src" detailed "$src$n")")
    done
    gm="$(printf '%s\n' "${g[@]}" | median)"; dm="$(printf '%s\n' "${d[@]}" | median)"
    echo "$src: general ${gm}s, detailed ${dm}s (median of 3; runs general ${g[*]} / detailed ${d[*]})"
done
