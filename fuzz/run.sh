#!/usr/bin/env bash
# Fuzzes the whole API with schemathesis against a fresh pwreset, from its own OpenAPI
# document (GET /openapi.json).
#
# Usage: fuzz/run.sh [path-to-pwreset-binary] [examples-per-operation]
#   The binary defaults to target/debug/pwreset (build it first). Schemathesis is installed
#   into target/schemathesis-venv from fuzz/requirements.txt (PyPI) on first use.
#
# Passes when no response is a 5xx and every response matches the documented status
# codes, content types, headers and schemas, over at least 1,000 generated requests.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$fuzz_dir")"
# shellcheck source=../scripts/temp-server.sh
source "$repo_root/scripts/temp-server.sh"
temp_server_name=fuzz

bin="$(temp_server_binary "${1:-}" "$repo_root")"
examples="${2:-60}"
min_requests=1000

command -v python3 >/dev/null 2>&1 || temp_server_die "python3 (3.9+) is required to run schemathesis"
venv="$repo_root/target/schemathesis-venv"
if [[ ! -x "$venv/bin/schemathesis" || "$fuzz_dir/requirements.txt" -nt "$venv/bin/schemathesis" ]]; then
  echo "fuzz: installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$fuzz_dir/requirements.txt"
  touch "$venv/bin/schemathesis"
fi

# Rate limits would answer most generated requests with 429; fuzz the code behind them.
export PWRESET_LIMIT_EMAIL=off PWRESET_LIMIT_CLIENT=off PWRESET_LIMIT_CREDENTIAL=off \
  PWRESET_LIMIT_CUSTOMER_FAILURES=off PWRESET_MAIL_PREVIEW=false
temp_server_start fuzz "$bin"
token="$("$bin" token --kind integration)" || temp_server_die "pwreset token failed"

report="$tmp/schemathesis.txt"
set +e
"$venv/bin/schemathesis" run "$url/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$examples" --seed 20261127 --no-color 2>&1 | tee "$report"
status=${PIPESTATUS[0]}
set -e

# "Test cases:\n  1391 generated, 1391 passed" (plus ", N failed" when some failed).
line="$(grep -A1 '^Test cases:' "$report" | tail -n 1)"
generated="$(sed -E 's/^ *([0-9]+) generated.*/\1/' <<<"$line")"
passed="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)"
failed="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)"
echo "schemathesis: $passed passed, $failed failed"
[[ "$generated" =~ ^[0-9]+$ ]] || temp_server_die "could not read the number of generated requests"
(( generated >= min_requests )) || temp_server_die "only $generated requests were generated (need $min_requests)"
if grep -qE 'status=5[0-9]{2}' "$tmp/server.log"; then
  temp_server_die "the server logged a 5xx"
fi
exit "$status"
