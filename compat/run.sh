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

bin="$(temp_server_binary "${1:-}" "$repo_root")"

temp_server_node_deps "$compat_dir"

cd "$compat_dir"

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
