#!/usr/bin/env bash
# console.sh - step-by-step control of ossimport (standalone mode; distributed mode
# adds `worker`, see README "Distributed mode").
#
#   bash console.sh {submit|clean|start|stop|stat|retry|check|version|worker}
#
# Runs from the folder that holds this script (the package root, with conf/),
# so it works from any current directory. Output and exit code are those of
# the ossimport binary: 0 ok, 1 some files failed, 2 usage/config error.
set -u

cd "$(dirname -- "${BASH_SOURCE[0]:-$0}")" || {
    echo "Error: cannot enter the ossimport folder." >&2
    exit 2
}

usage() {
    cat <<'EOF'
Usage: console.sh {submit|clean|start|stop|stat|retry|check|version|worker}
  submit   submit the job described in conf/local_job.cfg (job:local_test)
           submit --dry-run: list and split the source as the job would and print
           tasks, files and bytes, what importSince leaves out, invalid keys and (with
           isSkipExistFile) what is already there; writes nothing; --json for scripts
  clean    delete the job's state so it can be submitted again (service must be stopped)
  start    start the import service (master, worker, tracker) in the background;
           log in logs/ossimport2.log
  stop     stop the import service
  stat     print the job's status (JobState:Running|Succeed|Failed|Abort|Stopped)
           stat --json: one JSON document; stat --watch: follow the job until it ends
  retry    run the failed tasks again (only the failed files are redone)
  check    check the destination, keys, bucket, clock, source and working folder
           before a long run (one line each, OK/WARN/FAIL; exit 1 on a FAIL)
  version  print the version
  worker   distributed mode: join the queue of conf/sys.properties' queueUrl and run
           the master's tasks in the foreground (what worker.sh runs); --host-name NAME
EOF
}

# Locate the ossimport binary and print its path; exit 2 when there is none.
# A package's bin/ossimport is used as is. In a source checkout with cargo on PATH,
# `cargo build --release` runs first, so sources newer than the binary (after a
# git pull) are never run stale; when nothing changed it is a quiet no-op. Without
# cargo, or with OSSIMPORT_NO_BUILD=1 (import.sh sets it once it has built), the
# binary built earlier is used. CARGO_TARGET_DIR is honoured.
find_binary() {
    local built="${CARGO_TARGET_DIR:-target}/release/ossimport"
    if [ -x bin/ossimport ]; then
        printf '%s\n' "bin/ossimport"
        return 0
    fi
    if [ -f Cargo.toml ] && [ -z "${OSSIMPORT_NO_BUILD:-}" ] && command -v cargo >/dev/null 2>&1; then
        build_release || exit 2
        if [ -x "$built" ]; then
            printf '%s\n' "$built"
            return 0
        fi
        echo "Error: cargo build --release finished but $built is missing." >&2
        exit 2
    fi
    if [ -x "$built" ]; then
        printf '%s\n' "$built"
        return 0
    fi
    if [ -f Cargo.toml ]; then
        echo "Error: ossimport binary not found and cargo is not installed to build it" >&2
        echo "       (install Rust from https://rustup.rs, or use a packaged release with bin/ossimport)." >&2
        exit 2
    fi
    echo "Error: ossimport binary not found: expected bin/ossimport or target/release/ossimport" >&2
    exit 2
}

# cargo build --release, quietly: "Building ossimport..." is said only once cargo
# starts compiling (a fresh build says nothing), and cargo's own messages are
# shown only when the build fails.
build_release() {
    local out rc
    out="$(
        cargo build --release --color never 2>&1 | {
            announced=""
            while IFS= read -r line; do
                if [ -z "$announced" ] && [[ $line =~ ^[[:space:]]*Compiling[[:space:]] ]]; then
                    echo "Building ossimport (cargo build --release; a first build takes several minutes)..." >&2
                    announced=1
                fi
                printf '%s\n' "$line"
            done
        }
        exit "${PIPESTATUS[0]}"
    )"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" >&2
        echo "Error: building ossimport failed (cargo build --release); see the messages above." >&2
        return 1
    fi
}

if [ "$#" -lt 1 ]; then
    usage >&2
    exit 2
fi

word="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
shift

case "$word" in
    stat)
        # The original's one word, plus ours: stat --json | stat --watch
        case "${1:-}" in
            '' | --json | --watch) ;;
            *)
                echo "Error: stat takes no option but --json or --watch." >&2
                exit 2
                ;;
        esac
        ;;
    submit)
        # The original's one word, plus ours: submit --dry-run [--json]
        case "$*" in
            '' | --dry-run | '--dry-run --json' | '--json --dry-run') ;;
            *)
                echo "Error: submit takes no option but --dry-run (and --json with it)." >&2
                exit 2
                ;;
        esac
        ;;
    clean | start | stop | retry | check | version)
        if [ "$#" -ne 0 ]; then
            echo "Error: console.sh takes exactly one word." >&2
            usage >&2
            exit 2
        fi
        ;;
    sandbox)
        # Internal helper used by import.sh: sandbox --ensure | --stop
        ;;
    worker)
        # Distributed mode (worker.sh): join the queue in the foreground; --host-name NAME
        ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        echo "Error: unknown command: $word" >&2
        usage >&2
        exit 2
        ;;
esac

bin="$(find_binary)" || exit 2
exec "$bin" "$word" "$@"
