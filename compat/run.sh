#!/usr/bin/env bash
# Runs the official-client checks against a fresh pwreset:
#   signin.mjs  @commercelayer/js-auth gets, verifies, refreshes and revokes tokens, the SDK
#               uses them, and a reset ends the customer's sessions;
#   check.mjs   @commercelayer/sdk drives the reset API with tokens js-auth obtained.
#
# Usage: compat/run.sh [path-to-pwreset-binary]
#   The binary defaults to target/debug/pwreset under the repository root. It is not built
#   here: build it first (cargo build).
#
# Starts `pwreset serve` on a free local port with a throwaway data dir (SQLite, generated
# keys) and PWRESET_ISSUER=https://auth.$CL_DOMAIN (js-auth talks only to https://auth.<domain>;
# the checks' fetch sends *.$CL_DOMAIN to the local server), creates an integration and a
# sales channel client with `pwreset client create`, runs both checks, stops the server with
# SIGTERM (it must exit 0, quietly, within 15 s) and always removes the data dir.
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

# A reserved name (RFC 2606): nothing here ever resolves it; the checks' fetch maps it to $url.
export CL_DOMAIN=pwreset.test
export PWRESET_ISSUER="https://auth.$CL_DOMAIN"
temp_server_start compat "$bin"

json_field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];if(typeof v!=="string")process.exit(1);console.log(v)})' "$1"; }
integration="$("$bin" client create --kind integration --name "compat integration")" \
  || die "pwreset client create --kind integration failed"
sales_channel="$("$bin" client create --kind sales_channel --name "compat storefront")" \
  || die "pwreset client create --kind sales_channel failed"
export CL_INTEGRATION_ID CL_INTEGRATION_SECRET CL_SALES_CHANNEL_ID
CL_INTEGRATION_ID="$(json_field client_id <<<"$integration")" || die "no client_id in: $integration"
CL_INTEGRATION_SECRET="$(json_field client_secret <<<"$integration")" || die "no client_secret in: $integration"
CL_SALES_CHANNEL_ID="$(json_field client_id <<<"$sales_channel")" || die "no client_id in: $sales_channel"

echo "compat: @commercelayer/js-auth $(node -p 'require("./node_modules/@commercelayer/js-auth/package.json").version') against $url"
PWRESET_URL="$url" node signin.mjs

# The SDK check runs on tokens js-auth obtained from this server.
token_for() {
  PWRESET_URL="$url" node --input-type=module -e '
    import { authenticate } from "@commercelayer/js-auth"
    const [id, secret] = process.argv.slice(1)
    const real = globalThis.fetch
    globalThis.fetch = (u, init) => real(process.env.PWRESET_URL + new URL(u).pathname, init)
    const auth = await authenticate("client_credentials", { clientId: id, clientSecret: secret || undefined, domain: process.env.CL_DOMAIN })
    if (!auth.accessToken) { console.error(JSON.stringify(auth)); process.exit(1) }
    console.log(auth.accessToken)' "$@"
}
integration_token="$(token_for "$CL_INTEGRATION_ID" "$CL_INTEGRATION_SECRET")" || die "js-auth could not get an integration token"
sales_channel_token="$(token_for "$CL_SALES_CHANNEL_ID")" || die "js-auth could not get a sales channel token"

echo "compat: @commercelayer/sdk $(node -p 'require("./node_modules/@commercelayer/sdk/package.json").version') against $url"
PWRESET_URL="$url" \
  CL_INTEGRATION_TOKEN="$integration_token" \
  CL_SALES_CHANNEL_TOKEN="$sales_channel_token" \
  node check.mjs

# Shutting down is part of the contract with whatever runs the service.
temp_server_stop_checked
