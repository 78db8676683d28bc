# pwreset: the recipes people run. Everything here is plain cargo underneath, so a
# machine without `just` can run the same commands by hand.

default:
    @just --list

# Run the service (SQLite in ./pwreset-data unless PWRESET_DATABASE_URL is set).
run *ARGS:
    cargo run --release -- {{ARGS}}

# Print an API token: just token integration | just token sales_channel
token KIND="integration":
    cargo run -q --release -- token --kind {{KIND}}

# Format the whole workspace.
fmt:
    cargo fmt --all

# Lint with warnings as errors, docs included (what CI runs).
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# The whole test suite (finds or starts Postgres by itself).
test:
    cargo test --workspace

# Benchmark the release binary on Postgres and print the table (about 3 minutes).
bench *ARGS:
    cargo build --release --workspace --bins
    target/release/pwreset-bench {{ARGS}}

# Latency at 10 thousand vs 10 million resets (seeds with generate_series; up to 30 min).
bench-scale:
    cargo build --release --workspace --bins
    target/release/pwreset-bench --scale

# What each row and index of create's statement costs Postgres alone (pgbench variants).
bench-costs:
    cargo build --release --workspace --bins
    target/release/pwreset-bench --write-costs

# The one-minute smoke run of the benchmark.
bench-quick:
    cargo build --release --workspace --bins
    target/release/pwreset-bench --quick

# Fuzz the API with schemathesis (builds first).
fuzz:
    cargo build -p pwreset-app
    bash fuzz/run.sh target/debug/pwreset

# The hosted pages in headless Chromium with JavaScript off (builds first; installs Debian's
# chromium when missing). Screenshots in target/browser-screenshots/.
browser:
    cargo build -p pwreset-app
    bash browser/run.sh target/debug/pwreset

# Mutation testing (cargo-mutants) of the domain crate, the token digest, hashing and JWT
# code, and the HTTP auth extractor, each mutant checked by its own crate's tests. Slow:
# see docs/testing.md for the figures and for running a part, e.g.
# `just mutants --file crates/domain/src/service/limiter.rs`.
# Needs `cargo install cargo-mutants`; results in mutants.out/.
mutants *ARGS:
    cargo mutants --package pwreset-domain --package pwreset-adapter-crypto {{ARGS}}
    cargo mutants --package pwreset-adapter-http --file crates/adapter-http/src/auth.rs --output mutants.out/http-auth {{ARGS}}

# Three instances behind HAProxy on PgBouncer and Postgres: the black-box suite through
# PgBouncer, cross-instance invariants, /metrics reconciliation and six faults under load
# (about 8 minutes; needs root; installs pgbouncer, haproxy and nftables when missing).
cluster-check *ARGS:
    cargo build -p pwreset-app
    cargo run -q -p pwreset-tests --bin pwreset-cluster -- {{ARGS}}

# Everything CI runs.
ci:
    bash .ci/run

# Stop the throwaway Postgres clusters the tests may have started (plain and TLS).
db-stop:
    #!/usr/bin/env bash
    set -eu
    pg_ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -n1 || command -v pg_ctl)
    for data in target/pwreset-test-pg/data target/pwreset-test-pg-tls/data; do
        [ -d "$data" ] || { echo "no cluster in $data"; continue; }
        if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" -D "$data" stop -m fast || true; else "$pg_ctl" -D "$data" stop -m fast || true; fi
    done
