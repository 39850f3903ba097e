#!/usr/bin/env bash
# Starts the web app and its background worker (with its scheduler) in the embedded
# mode, and stops both on Ctrl-C.
set -euo pipefail
: "${PY:=.venv/bin/python}" "${HOST:=127.0.0.1}" "${PORT:=8000}"
export DEBUG="${DEBUG:-true}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://$HOST:$PORT}"
bin=$(dirname "$PY")

"$bin/celery" -A config worker --beat --loglevel WARNING --concurrency 2 \
  --schedule var/celerybeat-schedule &
worker=$!
"$PY" manage.py runserver "$HOST:$PORT" --noreload &
web=$!

stop() {
  trap - INT TERM EXIT
  kill "$web" "$worker" 2>/dev/null || true
  wait "$web" "$worker" 2>/dev/null || true
}
trap stop INT TERM EXIT
echo "Dataset Publisher: http://$HOST:$PORT/admin/  (Ctrl-C stops the web app and the worker)"
wait -n "$web" "$worker"
