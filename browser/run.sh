#!/usr/bin/env bash
# The real-browser check of the hosted pages (browser/journey.mjs) against a fresh pwreset.
#
# Usage: browser/run.sh [path-to-pwreset-binary]
#   The binary defaults to target/debug/pwreset under the repository root. It is not built
#   here: build it first (cargo build -p pwreset-app).
#
# Installs Debian's chromium with apt-get when /usr/bin/chromium is missing (playwright's own
# browser download cannot work here: playwright-core drives the system Chromium), runs
# `npm ci` when needed, starts `pwreset serve` on a free loopback port with a throwaway data
# dir (SQLite), mail delivery to an SMTP sink on another loopback port (the sink lives in
# journey.mjs), self-service and a sign-in URL; mints a live integration token, drives the
# journey in headless Chromium, then stops the server with SIGTERM (it must exit 0 quietly).
# Screenshots go to target/browser-screenshots/, the reset form at 1280 px to
# docs/reset-page.png. The journey is bounded (4 min inside, 6 min here); on failure the
# server log tail is printed and the exit status is non-zero.
set -euo pipefail

browser_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(dirname "$browser_dir")"

# shellcheck source=../scripts/temp-server.sh
source "$repo_root/scripts/temp-server.sh"
die() { temp_server_die "$@"; }
temp_server_name=browser

bin="$(temp_server_binary "${1:-}" "$repo_root")"

# Installs Debian package $1 with apt-get, saying so; dies naming what to do without apt-get.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "$2 is missing and there is no apt-get to install Debian's $1 package: install it"
  local sudo=()
  (( EUID == 0 )) || sudo=(sudo)
  echo "browser: $2 is missing: installing Debian's $1 package with apt-get"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$1" >/dev/null
}

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  apt_install chromium "$chromium"
  [[ -x "$chromium" ]] || die "apt-get install chromium did not provide $chromium"
fi
# sqlite3 reads the stored password hash, to check the new password is the one stored.
if ! command -v sqlite3 >/dev/null 2>&1; then
  apt_install sqlite3 sqlite3
  command -v sqlite3 >/dev/null 2>&1 || die "apt-get install sqlite3 did not provide sqlite3"
fi

temp_server_node_deps "$browser_dir"

cd "$browser_dir"

smtp_port="$(temp_server_free_port)"
signin_url="https://shop.example/account/sign-in"
export PWRESET_DELIVERY=mail
export PWRESET_SELF_SERVICE=true
export PWRESET_SMTP_URL="smtp://127.0.0.1:$smtp_port?tls=none"
export PWRESET_SIGNIN_URL="$signin_url"
export PWRESET_OUTBOX_POLL_MS=200
# Access lines are logged at INFO: the journey checks that none carries the token.
export PWRESET_LOG=info

temp_server_start browser "$bin"

integration_token="$("$bin" token --kind integration --mode live)" || die "pwreset token --kind integration --mode live failed"
[[ -n "$integration_token" ]] || die "pwreset token printed nothing"

shots="$repo_root/target/browser-screenshots"
rm -rf "$shots"
mkdir -p "$shots"

set +e
PWRESET_URL="$url" \
  BROWSER_SMTP_PORT="$smtp_port" \
  BROWSER_SIGNIN_URL="$signin_url" \
  BROWSER_INTEGRATION_TOKEN="$integration_token" \
  BROWSER_DB="$PWRESET_DATA_DIR/pwreset.db" \
  BROWSER_SERVER_LOG="$tmp/server.log" \
  BROWSER_PROFILE="$tmp/chromium-profile" \
  BROWSER_SHOTS="$shots" \
  BROWSER_DOCS_PICTURE="$repo_root/docs/reset-page.png" \
  CHROMIUM="$chromium" \
  timeout --kill-after=10 360 node journey.mjs
status=$?
set -e
if (( status != 0 )); then
  kill -0 "$server_pid" 2>/dev/null || echo "browser: the pwreset server is no longer running" >&2
  die "the browser journey failed (status $status): see the lines above"
fi

temp_server_stop_checked
