# Starts a throwaway `pwreset serve` for a check script, and always cleans it up.
# Sourced (not run) by compat/run.sh and fuzz/run.sh.
#
#   temp_server_binary ARG ROOT      # prints the binary's absolute path (ARG, or ROOT's debug build)
#   temp_server_node_deps DIR        # needs node >= 20 and npm; `npm ci` in DIR when stale
#   temp_server_start NAME BINARY    # sets: url, tmp, server_pid; exports PWRESET_DATA_DIR
#   temp_server_stop_checked         # SIGTERM; fails unless it exits 0, quietly, within 15 s
#
# The server listens on a free 127.0.0.1 port with a fresh data dir (SQLite, generated
# secrets) under a temp dir; `pwreset token` run afterwards with the same environment mints
# tokens for it. On exit the server is stopped, its log tail shown if the script failed,
# and the temp dir removed.

temp_server_die() {
  echo "${temp_server_name:-check}: $*" >&2
  exit 1
}

temp_server_cleanup() {
  local rc=$?
  if [[ -n "${server_pid:-}" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if (( rc != 0 )) && [[ -f "${tmp:-}/server.log" ]]; then
    echo "---- pwreset server log (last 50 lines) ----" >&2
    tail -n 50 "$tmp/server.log" >&2 || true
    echo "--------------------------------------------" >&2
  fi
  [[ -n "${tmp:-}" ]] && rm -rf "$tmp"
  exit "$rc"
}

# The binary to check: ARG (made absolute now, so a relative argument means what it said
# before any `cd`), or ROOT/target/debug/pwreset.
temp_server_binary() {
  local bin="${1:-$2/target/debug/pwreset}"
  case "$bin" in
    /*) ;;
    *) bin="$PWD/$bin" ;;
  esac
  printf '%s\n' "$bin"
}

# Checks for node >= 20 and npm, and installs DIR's npm dependencies from its lock file
# when they are missing or older than it.
temp_server_node_deps() {
  command -v node >/dev/null 2>&1 || temp_server_die "node is required (>= 20) but was not found on PATH"
  command -v npm >/dev/null 2>&1 || temp_server_die "npm is required but was not found on PATH"
  local node_major
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  (( node_major >= 20 )) || temp_server_die "node >= 20 is required, found $(node --version)"
  # npm ci rewrites node_modules/.package-lock.json, so it doubles as the install stamp.
  if [[ ! -f "$1/node_modules/.package-lock.json" || "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]]; then
    echo "${temp_server_name:-check}: installing dependencies (npm ci)"
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}

temp_server_free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
  fi
}

temp_server_start() {
  temp_server_name="$1"
  local bin="$2"
  [[ -x "$bin" ]] || temp_server_die "pwreset binary not found or not executable: $bin (build it with: cargo build)"
  command -v curl >/dev/null 2>&1 || temp_server_die "curl is required but was not found on PATH"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/pwreset-$temp_server_name.XXXXXX")"
  trap temp_server_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local port
  port="$(temp_server_free_port)"
  export PWRESET_DATA_DIR="$tmp/data"
  export PWRESET_BIND="127.0.0.1:$port"
  export PWRESET_LOG="${PWRESET_LOG:-warn}"
  url="http://127.0.0.1:$port"
  "$bin" serve >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 80); do
    kill -0 "$server_pid" 2>/dev/null || temp_server_die "pwreset serve exited before answering /health"
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health" || true)" == "200" ]]; then
      return 0
    fi
    sleep 0.25
  done
  temp_server_die "pwreset did not answer GET $url/health with 200 within 20s"
}

# Stops the server as an orchestrator would (SIGTERM) and fails unless it exits with status
# 0 within 15 s and logs nothing at WARN or ERROR while stopping.
temp_server_stop_checked() {
  local before rc=0 waited=0
  before="$(wc -l <"$tmp/server.log")"
  kill -TERM "$server_pid"
  while kill -0 "$server_pid" 2>/dev/null; do
    (( waited++ < 60 )) || temp_server_die "pwreset did not exit within 15 s of SIGTERM"
    sleep 0.25
  done
  wait "$server_pid" || rc=$?
  server_pid=""
  (( rc == 0 )) || temp_server_die "pwreset exited with status $rc after SIGTERM"
  if tail -n "+$((before + 1))" "$tmp/server.log" | grep -E "WARN|ERROR" >&2; then
    temp_server_die "pwreset logged the warnings or errors above while stopping"
  fi
  echo "$temp_server_name: pwreset stopped cleanly on SIGTERM"
}
