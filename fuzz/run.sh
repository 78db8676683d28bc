#!/usr/bin/env bash
# Fuzzes the whole API with schemathesis against a fresh pwreset, from its own OpenAPI
# document (GET /openapi.json), in three passes, each against its own server:
#
#   integration    an integration token, rate limits off: every operation's own code
#   sales_channel  a sales-channel token, rate limits off: what a storefront may reach
#   limited        an integration token, tight rate limits on: 429 answers and their
#                  Retry-After / X-Ratelimit-* headers checked against the document
#
# Usage: fuzz/run.sh [path-to-pwreset-binary] [examples-per-operation]
#   The binary defaults to target/debug/pwreset (build it first). Schemathesis is installed
#   into target/schemathesis-venv from fuzz/requirements.txt (PyPI) on first use.
#
# Every schemathesis check is on (fuzz/schemathesis.toml gives the reason for each setting). A
# pass fails when schemathesis reports a failure, when fewer than its minimum number of
# requests were sent, or when any response was a 5xx. That last count is read from the
# HTTP archive schemathesis writes of every request it sent, so it depends neither on the
# server's log format nor on schemathesis' console output.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$fuzz_dir")"
# shellcheck source=../scripts/temp-server.sh
source "$repo_root/scripts/temp-server.sh"
temp_server_name=fuzz

bin="$(temp_server_binary "${1:-}" "$repo_root")"
examples="${2:-60}"

command -v python3 >/dev/null 2>&1 || temp_server_die "python3 (3.9+) is required to run schemathesis"
venv="$repo_root/target/schemathesis-venv"
if [[ ! -x "$venv/bin/schemathesis" || "$fuzz_dir/requirements.txt" -nt "$venv/bin/schemathesis" ]]; then
  echo "fuzz: installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$fuzz_dir/requirements.txt"
  touch "$venv/bin/schemathesis"
fi

limits_off=(PWRESET_LIMIT_EMAIL=off PWRESET_LIMIT_CLIENT=off PWRESET_LIMIT_CREDENTIAL=off
  PWRESET_LIMIT_CUSTOMER_FAILURES=off)
# Small enough that a pass of this size meets every kind of limit many times over.
limits_on=(PWRESET_LIMIT_EMAIL=2/1h PWRESET_LIMIT_CLIENT=20/1h PWRESET_LIMIT_CREDENTIAL=10/1h
  PWRESET_LIMIT_CUSTOMER_FAILURES=3/1h)

# One pass in a subshell, so its server, temp dir and traps are its own.
#   run_pass NAME TOKEN-KIND EXAMPLES MIN-REQUESTS MIN-429 ENV...
run_pass() (
  local name="$1" kind="$2" n="$3" min_requests="$4" min_429="$5"
  shift 5
  export "$@" PWRESET_MAIL_PREVIEW=false
  temp_server_name="fuzz[$name]"
  temp_server_start "fuzz-$name" "$bin"
  temp_server_name="fuzz[$name]"
  local token
  token="$("$bin" token --kind "$kind")" || temp_server_die "pwreset token --kind $kind failed"

  local report="$tmp/schemathesis.txt" har="$tmp/requests.har" status
  set +e
  # From the pass's temp dir, so schemathesis keeps its example cache there, not in the
  # repository, and every run starts from the same state.
  (cd "$tmp" && "$venv/bin/schemathesis" --config-file "$fuzz_dir/schemathesis.toml" \
    run "$url/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --report har --report-har-path "$har" \
    --max-examples "$n" --seed 20261127 --no-color) 2>&1 | tee "$report"
  status=${PIPESTATUS[0]}
  set -e

  # "Test cases:\n  1391 generated, 1391 passed" (plus ", N failed" when some failed).
  local line passed failed
  line="$(grep -A1 '^Test cases:' "$report" | tail -n 1)"
  passed="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)"
  failed="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)"
  echo "schemathesis: $passed passed, $failed failed ($name)"

  # Every response schemathesis received, by status class, from its HTTP archive.
  local counts total server_errors limited
  [[ -s "$har" ]] || temp_server_die "schemathesis wrote no HTTP archive at $har"
  counts="$(python3 "$fuzz_dir/har_counts.py" "$har")" || temp_server_die "could not read $har"
  read -r total server_errors limited <<<"$counts"
  echo "fuzz[$name]: $total responses, $server_errors 5xx, $limited 429"
  (( total >= min_requests )) || temp_server_die "only $total requests were sent (need $min_requests)"
  (( server_errors == 0 )) || temp_server_die "$server_errors requests got a 5xx or no answer (listed above)"
  (( limited >= min_429 )) || temp_server_die "only $limited responses were a 429 (need $min_429)"
  exit "$status"
)

status=0
run_pass integration integration "$examples" 1000 0 "${limits_off[@]}" || status=1
run_pass sales_channel sales_channel "$(( (examples + 1) / 2 ))" 300 0 "${limits_off[@]}" || status=1
run_pass limited integration "$(( (examples + 1) / 2 ))" 300 20 "${limits_on[@]}" || status=1
exit "$status"
