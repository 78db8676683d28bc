#!/usr/bin/env bash
# Runs the @commercelayer/sdk compatibility check (compat/check.mjs) against a fresh pwreset.
#
# Usage: compat/run.sh [path-to-pwreset-binary]
#   The binary defaults to target/debug/pwreset under the repository root. It is not built
#   here: build it first (cargo build).
#
# Starts `pwreset serve` on a free local port with a throwaway data dir (SQLite, generated
# secrets), mints an integration and a sales channel token with `pwreset token` from the
# same data dir, runs the check, and always stops the server and removes the data dir.
set -euo pipefail

compat_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$compat_dir")"

die() {
  echo "compat/run.sh: $*" >&2
  exit 1
}

# Resolve the binary before changing directory, so a relative argument means what it says.
bin="${1:-$repo_root/target/debug/pwreset}"
case "$bin" in
  /*) ;;
  *) bin="$PWD/$bin" ;;
esac
[[ -x "$bin" ]] || die "pwreset binary not found or not executable: $bin (build it with: cargo build)"

command -v node >/dev/null 2>&1 || die "node is required (>= 20) but was not found on PATH"
command -v npm >/dev/null 2>&1 || die "npm is required but was not found on PATH"
command -v curl >/dev/null 2>&1 || die "curl is required but was not found on PATH"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || die "node >= 20 is required, found $(node --version)"

cd "$compat_dir"

# npm ci rewrites node_modules/.package-lock.json, so it doubles as the install stamp.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "compat: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pwreset-compat.XXXXXX")"
server_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if (( rc != 0 )) && [[ -f "$tmp/server.log" ]]; then
    echo "---- pwreset server log (last 50 lines) ----" >&2
    tail -n 50 "$tmp/server.log" >&2 || true
    echo "--------------------------------------------" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free port: bind port 0, read what the kernel picked, release it.
port="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"

export PWRESET_DATA_DIR="$tmp/data"
export PWRESET_BIND="127.0.0.1:$port"
export PWRESET_LOG=warn
url="http://127.0.0.1:$port"

"$bin" serve >"$tmp/server.log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 80); do
  kill -0 "$server_pid" 2>/dev/null || die "pwreset serve exited before answering /health"
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health" || true)" == "200" ]]; then
    ready=1
    break
  fi
  sleep 0.25
done
[[ -n "$ready" ]] || die "pwreset did not answer GET $url/health with 200 within 20s"

integration_token="$("$bin" token --kind integration)" || die "pwreset token --kind integration failed"
sales_channel_token="$("$bin" token --kind sales_channel)" || die "pwreset token --kind sales_channel failed"
[[ -n "$integration_token" && -n "$sales_channel_token" ]] || die "pwreset token printed nothing"

echo "compat: @commercelayer/sdk $(node -p 'require("./node_modules/@commercelayer/sdk/package.json").version') against $url"
PWRESET_URL="$url" \
  CL_INTEGRATION_TOKEN="$integration_token" \
  CL_SALES_CHANNEL_TOKEN="$sales_channel_token" \
  node check.mjs
