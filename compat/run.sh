#!/usr/bin/env bash
# Runs the @commercelayer/sdk compatibility check (compat/check.mjs) against a fresh pwreset.
#
# Usage: compat/run.sh [path-to-pwreset-binary]
#   The binary defaults to target/debug/pwreset under the repository root. It is not built
#   here: build it first (cargo build).
#
# Starts `pwreset serve` on a free local port with a throwaway data dir (SQLite, generated
# secrets), mints an integration and a sales channel token with `pwreset token` from the
# same data dir, runs the check, stops the server with SIGTERM (it must exit 0, quietly,
# within 15 s) and always removes the data dir.
set -euo pipefail

compat_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$compat_dir")"

# shellcheck source=../scripts/temp-server.sh
source "$repo_root/scripts/temp-server.sh"
die() { temp_server_die "$@"; }
temp_server_name=compat

# Resolve the binary before changing directory, so a relative argument means what it says.
bin="${1:-$repo_root/target/debug/pwreset}"
case "$bin" in
  /*) ;;
  *) bin="$PWD/$bin" ;;
esac

command -v node >/dev/null 2>&1 || die "node is required (>= 20) but was not found on PATH"
command -v npm >/dev/null 2>&1 || die "npm is required but was not found on PATH"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || die "node >= 20 is required, found $(node --version)"

cd "$compat_dir"

# npm ci rewrites node_modules/.package-lock.json, so it doubles as the install stamp.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "compat: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

temp_server_start compat "$bin"

integration_token="$("$bin" token --kind integration)" || die "pwreset token --kind integration failed"
sales_channel_token="$("$bin" token --kind sales_channel)" || die "pwreset token --kind sales_channel failed"
[[ -n "$integration_token" && -n "$sales_channel_token" ]] || die "pwreset token printed nothing"

echo "compat: @commercelayer/sdk $(node -p 'require("./node_modules/@commercelayer/sdk/package.json").version') against $url"
PWRESET_URL="$url" \
  CL_INTEGRATION_TOKEN="$integration_token" \
  CL_SALES_CHANNEL_TOKEN="$sales_channel_token" \
  node check.mjs

# Shutting down is part of the contract with whatever runs the service.
temp_server_stop_checked
