# Shared by bench/memory.sh and bench/audit_cost.sh (sourced, not run): build the release
# binary, make a scratch folder, and start one sandbox S3 server on a free 127.0.0.1 port.
# Sets BIN, WORK, SANDBOX_PID and ENDPOINT; the server and WORK go away when the script exits.
# The server's data lives on tmpfs (/dev/shm, or $BENCH_DATA), so disk state does not blur
# the figures.
cargo build --release --quiet
case "${CARGO_TARGET_DIR:-target}" in
    /*) BIN="$CARGO_TARGET_DIR/release/ossimport" ;;
    *) BIN="$PWD/${CARGO_TARGET_DIR:-target}/release/ossimport" ;;
esac
WORK="$(mktemp -d)"
DATA_PARENT="${BENCH_DATA:-/dev/shm}"
[ -d "$DATA_PARENT" ] && [ -w "$DATA_PARENT" ] || DATA_PARENT="$WORK"
DATA="$(mktemp -d "$DATA_PARENT/ossimport-bench.XXXXXX")"
trap 'kill "${SANDBOX_PID:-0}" 2>/dev/null || true; rm -rf "$WORK" "$DATA"' EXIT
"$BIN" sandbox --root "$DATA/data" --port 0 --bucket bench-bucket \
    --access-key bench-ak --secret-key bench-sk-123456 > "$WORK/sandbox.out" 2>/dev/null &
SANDBOX_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/sandbox.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT="$(sed -n 's/^sandbox listening on //p' "$WORK/sandbox.out")"
