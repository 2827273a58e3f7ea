#!/usr/bin/env bash
# make demo: the product's point on this machine. Starts the service on the embedded defaults
# (a local Ray head, SQLite, a local MLflow store, all under one data directory), submits a
# tiny batch-size study (2 batch sizes x sgd-baseline and extrap-gradient, equal epochs, the
# best of each cell confirmed on 2 seeds: 4 cells, each an ordinary sweep), follows it to the
# end, prints its table and draws its plot, prints the command that opens MLflow's UI, and
# stops the service it started. EXTRAP_DEMO_SPEC=FILE runs one sweep instead.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAP="$PWD/.venv/bin/extrap"
DEMO_HOME="${EXTRAP_DEMO_HOME:-$PWD/.extrap-demo}"
PORT="${EXTRAP_DEMO_PORT:-8765}"
SPEC="${EXTRAP_DEMO_SPEC:-}"
STUDY="${EXTRAP_DEMO_STUDY:-examples/studies/demo.yaml}"
mkdir -p "$DEMO_HOME"
export EXTRAP_HOME="$DEMO_HOME" EXTRAP_API_URL="http://127.0.0.1:$PORT"
export EXTRAP_CONFIG="$DEMO_HOME/cli-config.toml"  # leave the user's own login alone
started=$(date +%s)

echo "== starting the service (log: $DEMO_HOME/serve.log)"
"$EXTRAP" serve --port "$PORT" --home "$DEMO_HOME" >"$DEMO_HOME/serve.log" 2>&1 &
serve_pid=$!
stop_service() {
  if kill -0 "$serve_pid" 2>/dev/null; then
    echo "== stopping the service"
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
}
trap stop_service EXIT

for _ in $(seq 1 180); do
  if curl -fsS "$EXTRAP_API_URL/healthz" >/dev/null 2>&1 && [ -s "$DEMO_HOME/admin-token" ]; then
    break
  fi
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "the service did not start; its log:" >&2
    tail -n 30 "$DEMO_HOME/serve.log" >&2
    exit 1
  fi
  sleep 1
done
EXTRAP_TOKEN="$(cat "$DEMO_HOME/admin-token")"
export EXTRAP_TOKEN
echo "== service up at $EXTRAP_API_URL (data directory $DEMO_HOME)"

json_id() { "$PWD/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
if [ -n "$SPEC" ]; then
  echo "== submitting $SPEC"
  sweep_id=$("$EXTRAP" submit "$SPEC" --json | json_id)
  echo "== sweep $sweep_id: watching it to the end"
  "$EXTRAP" watch "$sweep_id" || true
  "$EXTRAP" show "$sweep_id"
  echo "== the best configuration, as a spec fragment to reuse:"
  "$EXTRAP" best "$sweep_id" --format yaml
else
  echo "== submitting the study $STUDY: each (batch size, arm) cell is a sweep"
  study_id=$("$EXTRAP" study submit "$STUDY" --json | json_id)
  echo "== study $study_id: following its cells to the end"
  "$EXTRAP" study watch "$study_id" --interval 5 >/dev/null || true
  echo "== test accuracy, mean ± std over the confirmation seeds (validation mean beside it):"
  "$EXTRAP" study table "$study_id" --plot "$DEMO_HOME/study-$study_id.png"
  echo "== plot: $DEMO_HOME/study-$study_id.png"
fi
echo "== compare the trials in MLflow's UI:"
echo "   EXTRAP_HOME=$DEMO_HOME $EXTRAP ui"
echo "== demo finished in $(( $(date +%s) - started )) s"
