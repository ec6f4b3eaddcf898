#!/usr/bin/env bash
# console.sh - step-by-step control of ossimport (standalone mode).
#
#   bash console.sh {submit|clean|start|stop|stat|retry|version}
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
Usage: console.sh {submit|clean|start|stop|stat|retry|version}
  submit   submit the job described in conf/local_job.cfg (job:local_test)
  clean    delete the job's state so it can be submitted again (service must be stopped)
  start    start the import service (master, worker, tracker) in the background;
           log in logs/ossimport2.log
  stop     stop the import service
  stat     print the job's status (JobState:Running|Succeed|Failed|Abort|Stopped)
  retry    run the failed tasks again (only the failed files are redone)
  version  print the version
EOF
}

# Locate the ossimport binary: packaged release first, then a source checkout,
# building it on first use. Prints the path; exits 2 when there is none.
find_binary() {
    local target_dir="${CARGO_TARGET_DIR:-target}"
    if [ -x bin/ossimport ]; then
        printf '%s\n' "bin/ossimport"
        return 0
    fi
    if [ -x "$target_dir/release/ossimport" ]; then
        printf '%s\n' "$target_dir/release/ossimport"
        return 0
    fi
    if [ -f Cargo.toml ]; then
        if ! command -v cargo >/dev/null 2>&1; then
            echo "Error: ossimport binary not found and cargo is not installed to build it" >&2
            echo "       (install Rust from https://rustup.rs, or use a packaged release with bin/ossimport)." >&2
            exit 2
        fi
        echo "Building ossimport (first run, this takes several minutes)..." >&2
        if ! cargo build --release >&2; then
            echo "Error: building ossimport failed (cargo build --release); see the messages above." >&2
            exit 2
        fi
        if [ -x "$target_dir/release/ossimport" ]; then
            printf '%s\n' "$target_dir/release/ossimport"
            return 0
        fi
        echo "Error: cargo build --release finished but $target_dir/release/ossimport is missing." >&2
        exit 2
    fi
    echo "Error: ossimport binary not found: expected bin/ossimport or target/release/ossimport" >&2
    exit 2
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
    submit | clean | start | stop | retry | version)
        if [ "$#" -ne 0 ]; then
            echo "Error: console.sh takes exactly one word." >&2
            usage >&2
            exit 2
        fi
        ;;
    sandbox)
        # Internal helper used by import.sh: sandbox --ensure | --stop
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
