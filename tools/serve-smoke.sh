#!/usr/bin/env bash
# Smoke test of `specula serve` with curl: starts the server on the demo target (loopback, a free port, an API key),
# then asks every endpoint once and checks the answers' shape, a streamed answer's [DONE], a bad request's 400,
# a missing key's 401 and the metrics. Exits non-zero on the first failure.
#   tools/serve-smoke.sh [extra serve options, e.g. --drafter pld]
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
key="sk-smoke-$$"
log=$(mktemp)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$root/specula" serve --port "$port" --api-key "$key" --chat-format chatml --context 512 "$@" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do # the first run may build the project
  curl -sf "$base/health" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "serve-smoke: the server exited" >&2; exit 1; }
  sleep 0.5
done
auth=(-H "Authorization: Bearer $key")
fail() { echo "serve-smoke: FAIL: $*" >&2; exit 1; }
check() { # name, expected substring, actual
  [[ "$3" == *"$2"* ]] || fail "$1: expected '$2' in: $3"
  echo "ok   $1"
}

check "GET /health" '"status":"ok"' "$(curl -s "$base/health")"
check "GET /v1/models" '"object":"list"' "$(curl -s "${auth[@]}" "$base/v1/models")"
check "POST /v1/completions" '"completion_tokens"' "$(curl -s "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"prompt": "public static int max(int a, int b) {\n", "max_tokens": 16, "temperature": 0}' "$base/v1/completions")"
check "POST /v1/chat/completions" '"chat.completion"' "$(curl -s "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Write a max method."}], "max_tokens": 16, "temperature": 0}' "$base/v1/chat/completions")"
stream=$(curl -sN "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "A loop."}], "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}}' \
  "$base/v1/chat/completions")
check "streamed chat: chunks" '"chat.completion.chunk"' "$stream"
check "streamed chat: usage chunk" '"usage":{' "$stream"
[[ "$(printf '%s\n' "$stream" | grep '^data: ' | tail -1)" == "data: [DONE]" ]] || fail "the stream does not end with data: [DONE]"
echo "ok   streamed chat: ends with data: [DONE]"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' -d '{"prompt": "x", "n": 2}' "$base/v1/completions")
check "n=2 is refused" 400 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' -d '{"prompt": ' "$base/v1/completions")
check "malformed JSON is refused" 400 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")
check "no API key" 401 "$code"
metrics=$(curl -s "$base/metrics")
check "metrics: time to first token" 'specula:time_to_first_token_seconds_count' "$metrics"
check "metrics: speculative counters" 'specula:spec_decode_num_accepted_tokens_total{drafter=' "$metrics"
echo "serve-smoke: all passed ($(grep -o 'serving .*' "$log" | head -1))"
