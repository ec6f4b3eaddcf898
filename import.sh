#!/usr/bin/env bash
# import.sh - one-click import with ossimport (standalone mode).
#
#   bash import.sh
#
# Submits the job in conf/local_job.cfg, starts the import service in the
# background, prints the job status every ${OSSIMPORT_STAT_INTERVAL:-10} seconds
# (also appended to logs/job_stat.log) and asks what to do when tasks fail.
# Answers are read from stdin; when stdin ends (non-interactive run) each
# question takes its default: resume the previous job, do not retry failed
# tasks, stop the service at the end.
# Exit codes: 0 imported, 1 the service ended without finishing, 2 error or
# failed tasks left unretried.
set -u

cd "$(dirname -- "${BASH_SOURCE[0]:-$0}")" || {
    echo "Error: cannot enter the ossimport folder." >&2
    exit 2
}

log() {
    printf '[import] %s\n' "$*"
}

# Every binary invocation goes through console.sh (binary discovery lives there).
console() {
    bash ./console.sh "$@"
}

# ask_yes_no "<prompt>" <yes|no>: ask until the answer is a yes or a no.
# Returns 0 for yes, 1 for no; at the end of stdin the second argument decides.
ask_yes_no() {
    local prompt="$1" default="$2" answer
    while true; do
        printf '%s ' "$prompt"
        if ! IFS= read -r answer; then
            printf '\n'
            if [ "$default" = "yes" ]; then
                log "No answer (end of input): Yes."
                return 0
            fi
            log "No answer (end of input): No."
            return 1
        fi
        answer="${answer%$'\r'}"
        # Piped answers are not echoed by a terminal: show them.
        [ -t 0 ] || printf '%s\n' "$answer"
        case "$answer" in
            y | Y | yes | Yes | YES) return 0 ;;
            n | N | no | No | NO) return 1 ;;
            *) echo "Please answer Yes or No." ;;
        esac
    done
}

interval="${OSSIMPORT_STAT_INTERVAL:-10}"
case "$interval" in
    '' | *[!0-9.]* | *.*.* | .)
        log "OSSIMPORT_STAT_INTERVAL='$interval' is not a number of seconds; using 10."
        interval=10
        ;;
esac

# 0. Find (or build, in a source checkout) the binary once, up front; the later
#    console.sh calls use it without asking cargo again.
if ! console version; then
    log "ossimport is not available; see the message above."
    exit 2
fi
export OSSIMPORT_NO_BUILD=1

# 1. Local sandbox destination (does nothing unless destDomain is a loopback
#    http endpoint with nothing listening).
console sandbox --ensure
rc=$?
if [ "$rc" -ne 0 ]; then
    log "Could not prepare the local sandbox destination (exit $rc); check destDomain in conf/local_job.cfg."
    exit 2
fi

# 2. Check the destination, keys, bucket, clock, source and working folder before the long
#    run; a FAIL stops here with its message.
log "Checking before the run (console.sh check)..."
console check
rc=$?
if [ "$rc" -ne 0 ]; then
    log "A check failed (exit $rc); fix what the FAIL line says and run import.sh again."
    exit 2
fi

# 3. Submit the job.
submit_job() {
    local out rc
    log "Submitting the job in conf/local_job.cfg (console.sh submit)..."
    out="$(console submit 2>&1)"
    rc=$?
    [ -n "$out" ] && printf '%s\n' "$out"
    if [ "$rc" -eq 0 ]; then
        return 0
    fi
    if printf '%s\n' "$out" | grep -q 'already exists'; then
        return 3
    fi
    log "Submit failed (exit $rc); fix conf/local_job.cfg and run import.sh again."
    exit 2
}

submit_job
rc=$?
if [ "$rc" -eq 3 ]; then
    if ask_yes_no "Clean the previous job, Yes or No:" no; then
        log "Stopping the import service (console.sh stop)..."
        console stop
        log "Cleaning the previous job (console.sh clean)..."
        if ! console clean; then
            log "Clean failed; run 'bash console.sh stop' and 'bash console.sh clean' by hand."
            exit 2
        fi
        if ! submit_job; then
            log "Submit failed after cleaning the previous job."
            exit 2
        fi
    else
        log "Resume the previous job from its checkpoint."
    fi
fi

# 4. Start the service.
log "Starting the import service (console.sh start)..."
# Through a file, not $(...): the service runs on in the background and must
# not keep this script waiting should it hold on to the output.
start_out="$(mktemp "${TMPDIR:-/tmp}/ossimport-start.XXXXXX")" || exit 2
console start >"$start_out" 2>&1
rc=$?
out="$(cat "$start_out")"
rm -f "$start_out"
[ -n "$out" ] && printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
    if printf '%s\n' "$out" | grep -q 'already running'; then
        log "The import service is already running; following its progress."
    else
        log "Start failed (exit $rc); see logs/ossimport2.log."
        exit 2
    fi
fi

# 5. Follow the job.
mkdir -p logs
log "Printing the job status every ${interval}s (also in logs/job_stat.log); Ctrl-C stops watching, not the service."
wait_s=1
misses=0
max_misses=30
while true; do
    if [ -t 1 ] && [ -t 2 ]; then
        # On a terminal: a live progress bar (files, bytes, rate, ETA) until the job
        # leaves Running; the status block is printed below as usual.
        console stat --watch >/dev/null
    else
        sleep "$wait_s"
    fi
    wait_s="$interval"
    out="$(console stat 2>&1)"
    printf '%s\n' "$out"
    printf '%s\n' "$out" >>logs/job_stat.log
    case "$out" in
        *JobState:Succeed*)
            break
            ;;
        *JobState:Failed*)
            misses=0
            if ask_yes_no "Retry the failed tasks, Yes or No:" no; then
                log "Retrying the failed tasks (console.sh retry)..."
                console retry
                rc=$?
                if [ "$rc" -ne 0 ]; then
                    log "Retry failed (exit $rc)."
                    exit 2
                fi
            else
                log "Failed tasks left as they are; see master/jobs/local_test/failed_tasks/*/audit.log and error.list."
                log "Run 'bash console.sh retry' later to retry them."
                exit 2
            fi
            ;;
        *JobState:Abort* | *JobState:Stopped*)
            log "The import service is not running any more and the job did not finish; see logs/ossimport2.log."
            log "Run 'bash import.sh' again (answer No to resume from the checkpoint)."
            exit 1
            ;;
        *JobState:*)
            misses=0
            ;;
        *)
            misses=$((misses + 1))
            if [ "$misses" -ge "$max_misses" ]; then
                log "No job status after $misses tries; see logs/ossimport2.log."
                exit 1
            fi
            ;;
    esac
done

# 6. Done.
echo "Import to oss completed."
if ask_yes_no "Stop the import service, Yes or No:" yes; then
    log "Stopping the import service (console.sh stop)..."
    console stop
    console sandbox --stop
else
    log "The import service keeps running; stop it with 'bash console.sh stop'."
fi
exit 0
