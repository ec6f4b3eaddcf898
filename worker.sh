#!/usr/bin/env bash
# worker.sh - a worker of distributed mode: joins the queue that conf/sys.properties names
# (queueUrl) and runs the master's tasks in the foreground until Ctrl-C, SIGTERM or
# `console.sh stop` in this folder. Give each worker a folder (workingDir) of its own.
#
#   bash worker.sh [--host-name NAME]
#
# Exit code: 0 after a stop, 2 for a configuration error (no queueUrl, a bad key).
exec bash "$(dirname -- "${BASH_SOURCE[0]:-$0}")/console.sh" worker "$@"
