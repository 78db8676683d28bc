//! `pwreset-cluster`: pwreset as users run it at scale, checked on real parts and broken
//! on purpose.
//!
//! It starts a Postgres cluster of its own, PgBouncer in transaction pooling mode, three
//! `pwreset serve` instances (one in a network namespace, reaching the data services over
//! a link the check can impair), HAProxy in front health-checking `/ready`, and an SMTP
//! sink. Then it:
//! 1. runs the black-box suite once with the application behind PgBouncer;
//! 2. checks the invariants that must hold across instances, through HAProxy;
//! 3. reconciles every instance's `/metrics` with what it sent itself;
//! 4. injects faults under a bounded load and prints one row per fault.
//!
//! Everything runs on loopback or in the namespace it creates; every load is bounded in
//! time and count; everything it started is stopped when it ends, failed or not. Needs
//! root (namespaces); installs PgBouncer and HAProxy with apt-get when missing.
//!
//! Usage: `pwreset-cluster [--bin PATH] [--dir PATH] [--fault-secs N] [--no-suite]`

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "counts of a bounded check (thousands) and seconds, far from any type's limits"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use pwreset_tests::proxy::Freezer;
use pwreset_tests::sinks::SmtpSink;
use traffic::{Call, Tally, complete_doc, concurrently, counted, customer_doc, json_of, reset_doc};

mod infra;
mod traffic;

use infra::Infra;

/// Checks passed so far (each invariant, each reconciled series, each fault row).
static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn passed(n: usize) {
    PASSED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

struct Options {
    bin: PathBuf,
    dir: PathBuf,
    fault_secs: u64,
    suite: bool,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn options() -> anyhow::Result<Options> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let mut o = Options {
        bin: target.join("debug/pwreset"),
        dir: target.join("pwreset-cluster"),
        fault_secs: 30,
        suite: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin" => o.bin = args.next().context("--bin needs a path")?.into(),
            "--dir" => o.dir = args.next().context("--dir needs a path")?.into(),
            "--fault-secs" => {
                o.fault_secs = args
                    .next()
                    .context("--fault-secs needs a number")?
                    .parse()
                    .context("--fault-secs needs a number")?;
                ensure!(
                    (20..=300).contains(&o.fault_secs),
                    "--fault-secs: 20 to 300"
                );
            }
            "--no-suite" => o.suite = false,
            "-h" | "--help" => {
                println!(
                    "pwreset-cluster: three pwreset instances behind HAProxy on PgBouncer and \
                     Postgres, checked across instances and under faults.\n\n\
                     Options:\n  --bin PATH        the pwreset binary (default target/debug/pwreset)\n  \
                     --dir PATH        working directory, wiped first (default target/pwreset-cluster)\n  \
                     --fault-secs N    seconds of load per fault scenario (default 30)\n  \
                     --no-suite        skip the black-box suite through PgBouncer\n\n\
                     Needs root (network namespaces, tc). Installs pgbouncer and haproxy with apt-get \
                     when missing."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    ensure!(
        o.bin.is_file(),
        "{} does not exist: build it first (cargo build -p pwreset-app)",
        o.bin.display()
    );
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The shared settings of every instance.
/// The instance in the namespace reaches PgBouncer through `relay`, on the data link.
fn instance_env(
    infra: &Infra,
    sink: SocketAddr,
    relay: SocketAddr,
    in_netns: bool,
) -> Vec<(String, String)> {
    let public = format!("http://{}", infra.haproxy_addr());
    let database = if in_netns {
        format!("postgres://postgres@{relay}/pwreset")
    } else {
        infra.bouncer_url()
    };
    [
        ("PWRESET_DATABASE_URL", database),
        ("PWRESET_DB_TRANSACTION_POOLER", "true".into()),
        (
            "PWRESET_DATABASE_MIGRATION_URL",
            infra.postgres_url(in_netns, "pwreset"),
        ),
        ("PWRESET_DB_MAX_CONNECTIONS", "10".into()),
        ("PWRESET_DB_ACQUIRE_TIMEOUT", "1s".into()),
        ("PWRESET_DB_STATEMENT_TIMEOUT", "1s".into()),
        ("PWRESET_PUBLIC_URL", public.clone()),
        ("PWRESET_ISSUER", public.clone()),
        (
            "PWRESET_SIGNING_KEYS",
            pwreset_tests::TEST_SIGNING_KEY.clone(),
        ),
        (
            "PWRESET_TOKEN_DIGEST_KEYS",
            pwreset_tests::TEST_DIGEST_KEY.into(),
        ),
        ("PWRESET_DELIVERY", "mail".into()),
        ("PWRESET_SMTP_URL", format!("smtp://{sink}?tls=none")),
        (
            "PWRESET_RESET_LINK",
            format!("{public}/reset-password?id={{id}}&token={{token}}"),
        ),
        ("PWRESET_SMTP_TIMEOUT", "5s".into()),
        ("PWRESET_WEBHOOK_TIMEOUT", "5s".into()),
        ("PWRESET_OUTBOX_LEASE", "15s".into()),
        ("PWRESET_OUTBOX_POLL_MS", "100".into()),
        ("PWRESET_RETRY_BASE_MS", "300".into()),
        ("PWRESET_WORKERS", "1".into()),
        ("PWRESET_HASH_CONCURRENCY", "1".into()),
        ("PWRESET_LIMIT_EMAIL", "3/1h".into()),
        ("PWRESET_LIMIT_CREDENTIAL", "off".into()),
        ("PWRESET_LIMIT_CLIENT", "off".into()),
        ("PWRESET_LIMIT_CUSTOMER_FAILURES", "off".into()),
        ("PWRESET_LIMIT_SIGNIN_EMAIL", "off".into()),
        ("PWRESET_LIMIT_SIGNIN_CLIENT", "off".into()),
        ("PWRESET_LOG", "info".into()),
        ("PWRESET_LOG_FORMAT", "text".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Whether an instance answers `/ready` with 200.
async fn ready(addr: SocketAddr) -> bool {
    let call = Call {
        method: "GET",
        target: "/ready".into(),
        route: "/ready",
        token: None,
        body: None,
    };
    tokio::time::timeout(Duration::from_secs(3), traffic::send(addr, &call))
        .await
        .is_ok_and(|r| r.is_ok_and(|r| r.status == 200))
}

/// HAProxy's view of each instance: `name -> UP/DOWN/...`.
async fn haproxy_states(stats: SocketAddr) -> HashMap<String, String> {
    let call = Call {
        method: "GET",
        target: "/stats;csv".into(),
        route: "/stats",
        token: None,
        body: None,
    };
    let Ok(res) = traffic::send(stats, &call).await else {
        return HashMap::new();
    };
    let mut lines = res.body.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(status)) = (col("pxname"), col("svname"), col("status")) else {
        return HashMap::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"pwreset") && f.get(sv).is_some_and(|s| s.starts_with('i')))
        .map(|f| (f[sv].to_owned(), f[status].to_owned()))
        .collect()
}

/// Polls `check` every 100 ms until it holds; the seconds it took, or an error after
/// `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > within {
            bail!("{what}: not within {}s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every instance ready, and HAProxy sees them all up.
async fn all_up(infra: &Infra) -> bool {
    for i in &infra.instances {
        if !ready(i.addr).await {
            return false;
        }
    }
    let states = haproxy_states(infra.stats_addr()).await;
    states.len() == infra.instances.len() && states.values().all(|s| s == "UP")
}

/// The reset mails at the sink: reset id -> (message ids, copies received).
fn reset_mails(sink: &SmtpSink) -> HashMap<String, (HashSet<String>, usize)> {
    let mut out: HashMap<String, (HashSet<String>, usize)> = HashMap::new();
    for mail in sink.received() {
        let text = mail.text();
        let Some(at) = text.find("reset-password?id=") else {
            continue;
        };
        let id: String = text[at + 18..].chars().take(36).collect();
        let entry = out.entry(id).or_default();
        entry
            .0
            .insert(mail.header("Message-ID").unwrap_or_default());
        entry.1 += 1;
    }
    out
}

/// The token in the reset mail of `id`, waiting for it up to 30 s.
async fn mailed_token(sink: &SmtpSink, id: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for mail in sink.received() {
            let text = mail.text();
            if let Some(at) = text.find(&format!("reset-password?id={id}&token=")) {
                let rest = &text[at + 18 + id.len() + 7..];
                let token: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                return Ok(token);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no reset mail for {id} within 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One instance's `/metrics`, as `series -> value`.
async fn scrape(addr: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let call = Call {
        method: "GET",
        target: "/metrics".into(),
        route: "/metrics",
        token: None,
        body: None,
    };
    let res = traffic::send(addr, &call)
        .await
        .map_err(|e| anyhow!("scraping {addr}: {e}"))?;
    ensure!(res.status == 200, "scraping {addr}: {}", res.status);
    Ok(res
        .body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}

async fn scrape_all(infra: &Infra) -> anyhow::Result<Vec<HashMap<String, f64>>> {
    let mut out = Vec::new();
    for i in &infra.instances {
        out.push(scrape(i.addr).await?);
    }
    Ok(out)
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

fn requests_series(method: &str, route: &str, status: u16) -> String {
    format!(r#"pwreset_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#)
}

/// The API's clients and tokens, through HAProxy.
struct Api {
    lb: SocketAddr,
    integration: String,
    sales_client: String,
    sales: String,
}

impl Api {
    async fn call(&self, call: &Call) -> anyhow::Result<pwreset_tests::http::Response> {
        traffic::send(self.lb, call)
            .await
            .map_err(|e| anyhow!("{} {}: {e}", call.method, call.target))
    }

    async fn customer(&self, email: &str, password: Option<&str>) -> anyhow::Result<String> {
        let res = self
            .call(&Call::json(
                "POST",
                "/api/customers".into(),
                "/api/customers",
                &self.integration,
                customer_doc(email, password),
            ))
            .await?;
        ensure!(
            res.status == 201,
            "creating {email}: {} {}",
            res.status,
            res.body
        );
        Ok(json_of(&res)["data"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    fn reset_call(&self, email: &str) -> Call {
        Call::json(
            "POST",
            "/api/customer_password_resets".into(),
            "/api/customer_password_resets",
            &self.integration,
            reset_doc(email),
        )
    }

    fn complete_call(&self, id: &str, token: &str, password: &str) -> Call {
        Call::json(
            "PATCH",
            format!("/api/customer_password_resets/{id}"),
            "/api/customer_password_resets/{id}",
            &self.sales,
            complete_doc(id, token, password),
        )
    }

    fn password_grant(&self, email: &str, password: &str) -> Call {
        Call::oauth(format!(
            "grant_type=password&client_id={}&username={}&password={}",
            self.sales_client,
            email.replace('@', "%40"),
            password.replace(' ', "+")
        ))
    }
}

fn statuses(results: &[Result<pwreset_tests::http::Response, String>]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in results {
        let key = match r {
            Ok(res) => res.status.to_string(),
            Err(e) => format!("error: {e}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

async fn run() -> anyhow::Result<()> {
    let o = options()?;
    let started = Instant::now();
    println!("cluster: working in {}", o.dir.display());
    let mut infra = Infra::start(&o.dir)?;
    let sink = SmtpSink::smtp(&format!("{}:0", infra::DATA_HOST_IP)).await;
    println!(
        "cluster: Postgres on 127.0.0.1:{}, PgBouncer (transaction pooling) on :{}, SMTP sink on {}",
        infra.pg_port, infra.bouncer_port, sink.addr
    );

    // The namespace's way to PgBouncer: a relay on the data link that can add delay (for
    // kernels without netem); packet loss and the partition happen in the kernel.
    let relay = pwreset_tests::proxy::Freezer::start_on(
        &format!("{}:0", infra::DATA_HOST_IP),
        SocketAddr::from(([127, 0, 0, 1], infra.bouncer_port)),
    )
    .await;
    let netem = infra.has_netem();
    let mut report = String::new();
    if o.suite {
        report.push_str(&suite_through_bouncer(&infra)?);
    }

    for (name, in_netns) in [("i1", false), ("i2", false), ("i3", true)] {
        let env = instance_env(&infra, sink.addr, relay.addr, in_netns);
        infra.add_instance(name, in_netns, env)?;
    }
    // The first runs the migrations; the others start on a current schema.
    infra.instance_start(0, &o.bin)?;
    let first = infra.instances[0].addr;
    until("i1 ready", Duration::from_secs(60), || ready(first)).await?;
    for i in 1..infra.instances.len() {
        infra.instance_start(i, &o.bin)?;
    }
    for i in &infra.instances {
        let addr = i.addr;
        until(
            &format!("{} ready", i.name),
            Duration::from_secs(60),
            || ready(addr),
        )
        .await?;
    }
    infra.haproxy_start()?;
    until(
        "HAProxy sees every instance up",
        Duration::from_secs(30),
        || all_up(&infra),
    )
    .await?;
    println!(
        "cluster: 3 instances up behind HAProxy on {} (i3 in network namespace {})",
        infra.haproxy_addr(),
        infra::NETNS
    );

    let api = clients(&o, &infra).await?;
    report.push_str(&invariants(&infra, &api, &sink).await?);
    report.push_str(&reconcile(&infra, &api, &sink).await?);
    report.push_str(&faults(&o, &mut infra, &api, &sink, &relay, netem).await?);

    println!("\n{report}");
    std::fs::write(o.dir.join("report.md"), &report)?;
    // For CI's count of every suite's checks.
    println!(
        "cluster: {} passed, 0 failed",
        PASSED.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "cluster: PASSED in {:.0}s (report in {})",
        started.elapsed().as_secs_f64(),
        o.dir.join("report.md").display()
    );
    Ok(())
}

/// The black-box cases on Postgres, the application behind PgBouncer (its migrations and
/// the cases' own checks direct).
fn suite_through_bouncer(infra: &Infra) -> anyhow::Result<String> {
    println!("cluster: the black-box suite with the application behind PgBouncer");
    let started = Instant::now();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace())
        .args([
            "test",
            "--locked",
            "-p",
            "pwreset-tests",
            "--test",
            "suite",
            "--",
        ])
        .args([
            "blackbox::postgres::",
            "blackbox_signin::postgres::",
            "delivery::postgres::",
            "blackbox::a_database_that_stops",
        ])
        .env(
            "PWRESET_TEST_DATABASE_URL",
            infra.postgres_url(false, "postgres"),
        )
        .env(
            "PWRESET_TEST_POOLER",
            format!("127.0.0.1:{}", infra.bouncer_port),
        )
        .output()
        .context("cannot run cargo test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("no test result line")
        .to_owned();
    // For the CI's count of every suite's tests.
    println!("{result}");
    if !out.status.success() {
        bail!(
            "the black-box suite failed behind PgBouncer:\n{}\n{}",
            stdout
                .lines()
                .filter(|l| l.contains("FAILED") || l.contains("panicked"))
                .collect::<Vec<_>>()
                .join("\n"),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(format!(
        "## Black-box suite behind PgBouncer (transaction pooling)\n\n- {result} ({:.0}s)\n\n",
        started.elapsed().as_secs_f64()
    ))
}

/// An integration client and a sales channel client, made with `pwreset client create`,
/// and their tokens from `/oauth/token` through HAProxy.
async fn clients(o: &Options, infra: &Infra) -> anyhow::Result<Api> {
    let create = |kind: &str| -> anyhow::Result<(String, String)> {
        let out = Command::new(&o.bin)
            .envs(infra.instance_env(0).iter().map(|(k, v)| (k, v)))
            .env("PWRESET_LOG", "warn")
            .args(["client", "create", "--kind", kind, "--name", "cluster"])
            .output()?;
        ensure!(
            out.status.success(),
            "pwreset client create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok((
            v["client_id"].as_str().unwrap_or_default().to_owned(),
            v["client_secret"].as_str().unwrap_or_default().to_owned(),
        ))
    };
    let (int_id, int_secret) = create("integration")?;
    let (sales_id, _) = create("sales_channel")?;
    let lb = infra.haproxy_addr();
    let token = |form: String| async move {
        let res = traffic::send(lb, &Call::oauth(form))
            .await
            .map_err(|e| anyhow!("/oauth/token: {e}"))?;
        ensure!(
            res.status == 200,
            "/oauth/token: {} {}",
            res.status,
            res.body
        );
        Ok::<_, anyhow::Error>(
            json_of(&res)["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let integration = token(format!(
        "grant_type=client_credentials&client_id={int_id}&client_secret={int_secret}"
    ))
    .await?;
    let sales = token(format!(
        "grant_type=client_credentials&client_id={sales_id}"
    ))
    .await?;
    Ok(Api {
        lb,
        integration,
        sales_client: sales_id,
        sales,
    })
}

/// Per instance, how much `series` grew between two scrapes of all.
fn per_instance(
    before: &[HashMap<String, f64>],
    after: &[HashMap<String, f64>],
    series: &[String],
) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| series.iter().map(|s| delta(b, a, s)).sum())
        .collect()
}

async fn invariants(infra: &Infra, api: &Api, sink: &SmtpSink) -> anyhow::Result<String> {
    let mut out = String::from("## Invariants across instances (through HAProxy)\n\n");
    let line = |out: &mut String, text: String| {
        passed(1);
        println!("cluster: {text}");
        out.push_str(&format!("- {text}\n"));
    };

    // 50 concurrent completions of one reset.
    let email = "one@cluster.example";
    let customer = api.customer(email, Some("the first password 1")).await?;
    let res = api.call(&api.reset_call(email)).await?;
    ensure!(res.status == 201, "reset for {email}: {}", res.body);
    let id = json_of(&res)["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token = mailed_token(sink, &id).await?;
    let before = scrape_all(infra).await?;
    let results = concurrently(
        api.lb,
        (0..50)
            .map(|_| api.complete_call(&id, &token, "the second password 2"))
            .collect(),
    )
    .await;
    let after = scrape_all(infra).await?;
    let counts = statuses(&results);
    let won = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status == 200))
        .count();
    let served = per_instance(
        &before,
        &after,
        &[200, 401, 404, 409, 410, 422, 429]
            .map(|s| requests_series("PATCH", "/api/customer_password_resets/{id}", s)),
    );
    ensure!(
        won == 1
            && results
                .iter()
                .all(|r| r.as_ref().is_ok_and(|r| r.status < 500)),
        "50 concurrent completions: {counts:?}"
    );
    ensure!(
        served.iter().filter(|n| **n > 0.0).count() >= 2,
        "the completions reached one instance only: {served:?}"
    );
    line(
        &mut out,
        format!("50 concurrent completions of one reset: {counts:?}; instances served {served:?}"),
    );

    // The per-email limit (3 an hour) across instances.
    let limited = "limited@cluster.example";
    api.customer(limited, None).await?;
    let before = scrape_all(infra).await?;
    let results = concurrently(api.lb, (0..10).map(|_| api.reset_call(limited)).collect()).await;
    let after = scrape_all(infra).await?;
    let counts = statuses(&results);
    let created = per_instance(
        &before,
        &after,
        &[requests_series(
            "POST",
            "/api/customer_password_resets",
            201,
        )],
    );
    ensure!(
        counts.get("201") == Some(&3) && counts.get("429") == Some(&7) && counts.len() == 2,
        "10 concurrent creates for one address under a limit of 3: {counts:?}"
    );
    line(
        &mut out,
        format!(
            "10 concurrent creates for one address, limit 3: {counts:?}; created per instance {created:?}"
        ),
    );

    // N resets, N mails, three workers competing.
    let n = 60;
    let emails: Vec<String> = (0..n)
        .map(|i| format!("mail-{i}@cluster.example"))
        .collect();
    for e in &emails {
        api.customer(e, None).await?;
    }
    let before = scrape_all(infra).await?;
    let results = concurrently(api.lb, emails.iter().map(|e| api.reset_call(e)).collect()).await;
    let ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.status == 201)
        .filter_map(|r| json_of(r)["data"]["id"].as_str().map(str::to_owned))
        .collect();
    ensure!(ids.len() == n, "{n} creates: {:?}", statuses(&results));
    until("every reset mailed", Duration::from_secs(60), || async {
        let mails = reset_mails(sink);
        ids.iter().all(|id| mails.contains_key(id))
    })
    .await?;
    // Time for a second delivery to show up, if there were one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = reset_mails(sink);
    let once = ids
        .iter()
        .filter(|id| {
            mails
                .get(*id)
                .is_some_and(|(m, copies)| m.len() == 1 && *copies == 1)
        })
        .count();
    let after = scrape_all(infra).await?;
    let delivered = per_instance(
        &before,
        &after,
        &[r#"pwreset_deliveries_total{outcome="delivered"}"#.to_owned()],
    );
    ensure!(once == n, "{n} resets: {once} mailed exactly once");
    line(
        &mut out,
        format!(
            "{n} concurrent resets with mail delivery: {n} mails, each once; delivered per instance {delivered:?}"
        ),
    );

    // 20 concurrent refreshes of one refresh token.
    let res = api
        .call(&api.password_grant(email, "the second password 2"))
        .await?;
    ensure!(res.status == 200, "sign-in: {} {}", res.status, res.body);
    let refresh = json_of(&res)["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let form = format!(
        "grant_type=refresh_token&client_id={}&refresh_token={refresh}",
        api.sales_client
    );
    let results = concurrently(api.lb, (0..20).map(|_| Call::oauth(form.clone())).collect()).await;
    let counts = statuses(&results);
    ensure!(
        counts.get("200") == Some(&1)
            && results
                .iter()
                .all(|r| r.as_ref().is_ok_and(|r| r.status < 500)),
        "20 concurrent refreshes: {counts:?}"
    );
    line(
        &mut out,
        format!("20 concurrent refreshes of one token: {counts:?}"),
    );

    // A reset completed on one instance ends the older sessions on every instance.
    let res = api
        .call(&api.password_grant(email, "the second password 2"))
        .await?;
    ensure!(res.status == 200, "sign-in: {}", res.body);
    let access = json_of(&res)["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let read_self = Call::get(
        format!("/api/customers/{customer}"),
        "/api/customers/{id}",
        &access,
    );
    let on_each = |call: Call| async move {
        let mut out = Vec::new();
        for i in &infra.instances {
            out.push(traffic::send(i.addr, &call).await.map_or(0, |r| r.status));
        }
        out
    };
    let before_reset = on_each(read_self.clone()).await;
    ensure!(
        before_reset.iter().all(|s| *s == 200),
        "the customer's token before: {before_reset:?}"
    );
    let first = infra.instances[0].addr;
    let res = traffic::send(first, &api.reset_call(email))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    ensure!(res.status == 201, "reset on i1: {}", res.body);
    let id = json_of(&res)["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token = mailed_token(sink, &id).await?;
    let res = traffic::send(
        first,
        &api.complete_call(&id, &token, "the third password 3"),
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    ensure!(res.status == 200, "completion on i1: {}", res.body);
    let after_reset = on_each(read_self).await;
    ensure!(
        after_reset.iter().all(|s| *s == 401),
        "the customer's older token after a reset on i1, per instance: {after_reset:?}"
    );
    line(
        &mut out,
        format!(
            "an access token from before a reset completed on i1, per instance: {before_reset:?} before, {after_reset:?} after"
        ),
    );
    out.push('\n');
    Ok(out)
}

/// Sends a known mix through HAProxy and checks that the instances' counters add up to it.
async fn reconcile(infra: &Infra, api: &Api, sink: &SmtpSink) -> anyhow::Result<String> {
    println!("cluster: reconciling /metrics with the load generator's own count");
    // Whatever earlier checks queued (a password-changed notice) is delivered first.
    let first = infra.instances[0].addr;
    let drained = || async move {
        scrape(first)
            .await
            .is_ok_and(|m| m.get("pwreset_outbox_pending") == Some(&0.0))
    };
    until("the outbox drains", Duration::from_secs(60), drained).await?;
    let mails_before = sink.received().len();
    let before = scrape_all(infra).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let lb = api.lb;
    let mut calls = Vec::new();
    for i in 0..150 {
        calls.push(vec![
            Call::json(
                "POST",
                "/api/customers".into(),
                "/api/customers",
                &api.integration,
                customer_doc(&format!("count-{i}@cluster.example"), None),
            ),
            api.reset_call(&format!("count-{i}@cluster.example")),
        ]);
    }
    for i in 0..60 {
        calls.push(vec![Call::get(
            format!("/api/customer_password_resets/0190b6c5-0000-7000-8000-{i:012}"),
            "/api/customer_password_resets/{id}",
            &api.integration,
        )]);
    }
    for i in 0..20 {
        let password = if i % 2 == 0 {
            "the third password 3"
        } else {
            "not the password"
        };
        calls.push(vec![api.password_grant("one@cluster.example", password)]);
    }
    for _ in 0..5 {
        calls.push(vec![api.reset_call("limited@cluster.example")]);
    }
    let queue = Arc::new(Mutex::new(calls));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (queue, tally) = (queue.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().expect("queue").pop() else {
                    return;
                };
                for call in batch {
                    let _ = counted(lb, &call, &tally).await;
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let tally = tally.lock().expect("tally").clone();
    let created = tally
        .series
        .get(&("POST".into(), "/api/customer_password_resets".into(), 201))
        .copied()
        .unwrap_or(0);
    // Every create's mail delivered, so the delivery counters are final too.
    until(
        "the window's mails delivered",
        Duration::from_secs(60),
        || async { sink.received().len() >= mails_before + created as usize && drained().await },
    )
    .await?;
    let after = scrape_all(infra).await?;
    let mails_after = sink.received().len();

    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    let mut unexpected = Vec::new();
    let mut check = |what: String, sent: f64, counted: f64| {
        if (sent - counted).abs() > f64::EPSILON {
            mismatches.push(format!("{what}: sent {sent}, counted {counted}"));
        }
        rows.push(format!("| {what} | {sent} | {counted} |"));
    };
    for ((method, route, status), n) in &tally.series {
        let series = requests_series(method, route, *status);
        let counted: f64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| delta(b, a, &series))
            .sum();
        check(format!("`{method} {route}` {status}"), *n as f64, counted);
    }
    // Nothing else moved but what HAProxy and this check send themselves.
    let mut names: HashSet<&String> = HashSet::new();
    for a in &after {
        names.extend(
            a.keys()
                .filter(|k| k.starts_with("pwreset_http_requests_total")),
        );
    }
    for series in names {
        let counted: f64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| delta(b, a, series))
            .sum();
        let ours = tally
            .series
            .keys()
            .any(|(m, r, s)| requests_series(m, r, *s) == *series);
        if !ours
            && counted > 0.0
            && !series.contains("route=\"/ready\"")
            && !series.contains("route=\"/metrics\"")
        {
            unexpected.push(format!(
                "{series} grew by {counted}, but nothing was sent there"
            ));
        }
    }
    let sum = |series: &str| -> f64 {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| delta(b, a, series))
            .sum()
    };
    let grants = |status: u16| {
        tally
            .series
            .get(&("POST".into(), "/oauth/token".into(), status))
            .copied()
            .unwrap_or(0) as f64
    };
    check(
        "sign-ins, `outcome=\"success\"`".into(),
        grants(200),
        sum(r#"pwreset_signins_total{outcome="success"}"#),
    );
    check(
        "sign-ins, `outcome=\"invalid_grant\"`".into(),
        grants(400),
        sum(r#"pwreset_signins_total{outcome="invalid_grant"}"#),
    );
    let limited = tally
        .series
        .get(&("POST".into(), "/api/customer_password_resets".into(), 429))
        .copied()
        .unwrap_or(0) as f64;
    check(
        "rate-limit rejections (429s sent back)".into(),
        limited,
        sum(r#"pwreset_rate_limit_rejections_total{route="/api/customer_password_resets"}"#),
    );
    check(
        "mails at the sink vs deliveries counted".into(),
        (mails_after - mails_before) as f64,
        sum(r#"pwreset_deliveries_total{outcome="delivered"}"#),
    );
    let mut out = String::from(
        "## Metrics reconciliation (sum over the three instances' /metrics vs the generator's own count)\n\n\
         | series | sent | counted |\n|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(r);
        out.push('\n');
    }
    out.push('\n');
    mismatches.extend(unexpected);
    ensure!(
        mismatches.is_empty(),
        "metrics do not add up:\n{}",
        mismatches.join("\n")
    );
    passed(rows.len());
    println!("cluster: metrics add up ({} series)", rows.len());
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillInstance,
    RestartPostgres,
    PostgresDown,
    RestartBouncer,
    MailDown,
    Netem,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::KillInstance => "kill -9 of one instance (i2), restarted 10 s later",
            Self::RestartPostgres => "Postgres restarted (pg_ctl restart -m fast)",
            Self::PostgresDown => "Postgres stopped for 5 s (pg_ctl stop -m fast, then start)",
            Self::RestartBouncer => "PgBouncer restarted (down 2 s)",
            Self::MailDown => "SMTP sink down for 30 s",
            Self::Netem => {
                "i3 to its database: 50 ms delay + 5% loss for 15 s, then a 20 s partition"
            }
        }
    }
}

/// One fault scenario's row.
struct Row {
    fault: Fault,
    load: Tally,
    acked: usize,
    lost_writes: usize,
    lost_mails: usize,
    duplicate_mails: usize,
    resent_copies: usize,
    recover: f64,
    note: String,
}

async fn faults(
    o: &Options,
    infra: &mut Infra,
    api: &Api,
    sink: &SmtpSink,
    relay: &Freezer,
    netem: bool,
) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for fault in [
        Fault::KillInstance,
        Fault::RestartPostgres,
        Fault::PostgresDown,
        Fault::RestartBouncer,
        Fault::MailDown,
        Fault::Netem,
    ] {
        println!("cluster: fault: {}", fault.name());
        let row = scenario(o, infra, api, sink, fault, relay, netem).await?;
        println!(
            "cluster:   {} requests, {} 2xx, {} 4xx, {} 503, {} other 5xx, {} lost writes, {} duplicate mails, recovered in {:.1}s",
            row.load.requests,
            row.load.ok,
            row.load.client_errors,
            row.load.unavailable + row.load.proxy_unavailable,
            row.load.other_5xx,
            row.lost_writes,
            row.duplicate_mails,
            row.recover
        );
        rows.push(row);
    }
    let mut out = format!(
        "## Faults under load ({} s of load each, 4 clients through HAProxy, creates paced at 20/s)\n\n\
         | fault | requests | 2xx | 4xx | 503 (instance / proxy) | other 5xx | no answer | slowest s | acked creates | lost acked writes | lost mails | duplicate mails | resent copies | recovered in s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        o.fault_secs
    );
    let mut failures = Vec::new();
    for r in &rows {
        let t = &r.load;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.fault.name(),
            t.requests,
            t.ok,
            t.client_errors,
            t.unavailable,
            t.proxy_unavailable,
            t.other_5xx,
            t.transport,
            t.slowest.as_secs_f64(),
            r.acked,
            r.lost_writes,
            r.lost_mails,
            r.duplicate_mails,
            r.resent_copies,
            r.recover
        ));
        let mut fail = |cond: bool, what: String| {
            if cond {
                failures.push(format!("{}: {what}", r.fault.name()));
            }
        };
        fail(
            r.lost_writes > 0,
            format!("{} acknowledged writes lost", r.lost_writes),
        );
        fail(
            r.lost_mails > 0,
            format!("{} acknowledged resets never mailed", r.lost_mails),
        );
        fail(
            r.duplicate_mails > 0,
            format!("{} resets mailed twice", r.duplicate_mails),
        );
        // A copy sent again (same Message-ID) is what at-least-once delivery does when the
        // record of a sent mail cannot be written for longer than half the lease: after a
        // kill, or a partition longer than that (the check's lease is 15 s). Restarts of
        // the database or the pooler are shorter, and must not resend.
        fail(
            r.resent_copies > 0 && !matches!(r.fault, Fault::KillInstance | Fault::Netem),
            format!("{} mails sent a second time", r.resent_copies),
        );
        fail(
            t.server_errors > 0,
            format!(
                "{} 5xx from instances other than 503: {:?}",
                t.server_errors, t.samples
            ),
        );
        fail(
            t.transport > 0,
            format!(
                "{} requests without an answer: {:?}",
                t.transport, t.samples
            ),
        );
        fail(
            t.other_5xx > 0 && r.fault != Fault::KillInstance,
            format!("{} 5xx from the proxy: {:?}", t.other_5xx, t.samples),
        );
        fail(t.ok == 0, "no request succeeded".into());
        fail(
            matches!(r.fault, Fault::RestartPostgres | Fault::PostgresDown) && r.recover > 10.0,
            format!("recovered only after {:.1}s", r.recover),
        );
    }
    out.push('\n');
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        out.push_str(&format!("- {}: {}\n", r.fault.name(), r.note));
    }
    out.push('\n');
    ensure!(failures.is_empty(), "faults:\n{}", failures.join("\n"));
    passed(rows.len());
    Ok(out)
}

async fn scenario(
    o: &Options,
    infra: &mut Infra,
    api: &Api,
    sink: &SmtpSink,
    fault: Fault,
    relay: &Freezer,
    netem: bool,
) -> anyhow::Result<Row> {
    let secs = match fault {
        Fault::Netem => o.fault_secs.max(60),
        Fault::MailDown => o.fault_secs.max(45),
        _ => o.fault_secs,
    };
    let run = format!("{fault:?}").to_lowercase();
    let since = chrono::Utc::now();
    let end = Instant::now() + Duration::from_secs(secs);
    let load = tokio::spawn({
        let (lb, token) = (api.lb, api.integration.clone());
        async move { traffic::load(lb, &token, &run, 4, 20.0, 5000, end).await }
    });
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut note = String::new();
    let recover = match fault {
        Fault::KillInstance => {
            // A mail server that takes 200 ms to answer keeps each worker holding the
            // batch it claimed for a few seconds, so i2 dies holding some.
            sink.set_slow(Duration::from_millis(200));
            tokio::time::sleep(Duration::from_secs(3)).await;
            infra.instance_kill(1);
            sink.set_slow(Duration::ZERO);
            let routed = until("HAProxy marks i2 down", Duration::from_secs(10), || async {
                haproxy_states(infra.stats_addr())
                    .await
                    .get("i2")
                    .is_some_and(|s| s.starts_with("DOWN"))
            })
            .await?;
            note = format!(
                "HAProxy marked i2 down {routed:.1}s after the kill; 502s are requests in flight on i2 when it died"
            );
            tokio::time::sleep(Duration::from_secs(10)).await;
            infra.instance_start(1, &o.bin)?;
            let addr = infra.instances[1].addr;
            until("i2 rejoins", Duration::from_secs(60), || async {
                ready(addr).await
                    && haproxy_states(infra.stats_addr())
                        .await
                        .get("i2")
                        .is_some_and(|s| s == "UP")
            })
            .await?
        }
        Fault::RestartPostgres | Fault::RestartBouncer => {
            let restarted = Instant::now();
            tokio::task::block_in_place(|| {
                if fault == Fault::RestartPostgres {
                    infra.postgres_restart()
                } else {
                    infra.bouncer_restart(Duration::from_secs(2))
                }
            })?;
            note = format!(
                "the restart took {:.1}s; recovery is counted from its end",
                restarted.elapsed().as_secs_f64()
            );
            serving_again(infra, api).await?
        }
        Fault::PostgresDown => {
            tokio::task::block_in_place(|| infra.postgres_stop())?;
            let stopped = Instant::now();
            // Each instance, asked directly while the database is down: /ready is 503, and
            // a write is a JSON:API 503 within the deadlines (1 s to acquire, 1 s + 1 s per
            // statement), never a 500, never silence.
            let mut answers = Vec::new();
            for i in &infra.instances {
                until(
                    &format!("{} not ready", i.name),
                    Duration::from_secs(5),
                    || async { !ready(i.addr).await },
                )
                .await?;
                let probe = api.reset_call(&format!("down-{}@cluster.example", i.name));
                let asked = Instant::now();
                let res = traffic::send(i.addr, &probe)
                    .await
                    .map_err(|e| anyhow!("{}: {e}", i.name))?;
                let took = asked.elapsed();
                let code = json_of(&res)["errors"][0]["code"].clone();
                ensure!(
                    res.status == 503
                        && code == "SERVICE_UNAVAILABLE"
                        && took < Duration::from_secs(5),
                    "{} with the database down: {} {} after {took:?}",
                    i.name,
                    res.status,
                    res.body
                );
                answers.push(format!("{} {:.1}s", i.name, took.as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_secs(5).saturating_sub(stopped.elapsed())).await;
            tokio::task::block_in_place(|| infra.postgres_start())?;
            note = format!(
                "while it was down every instance's /ready was 503 and a create sent to each directly got a JSON:API 503 ({}); recovery is counted from the start",
                answers.join(", ")
            );
            serving_again(infra, api).await?
        }
        Fault::MailDown => {
            sink.set_down(true);
            tokio::time::sleep(Duration::from_secs(30)).await;
            sink.set_down(false);
            let first = infra.instances[0].addr;
            until("the outbox drains", Duration::from_secs(90), || async {
                scrape(first)
                    .await
                    .is_ok_and(|m| m.get("pwreset_outbox_pending") == Some(&0.0))
            })
            .await?
        }
        Fault::Netem => {
            use infra::Impairment;
            // 50 ms more per round trip: netem's 25 ms each way, or the relay's.
            if !netem {
                relay.set_delay(Duration::from_millis(25));
            }
            infra.impair(Impairment::Lossy, netem)?;
            tokio::time::sleep(Duration::from_secs(15)).await;
            relay.set_delay(Duration::ZERO);
            infra.impair(Impairment::Partition, netem)?;
            let addr = infra.instances[2].addr;
            let fell = until(
                "i3 not ready in the partition",
                Duration::from_secs(15),
                || async { !ready(addr).await },
            )
            .await?;
            tokio::time::sleep(
                Duration::from_secs(20).saturating_sub(Duration::from_secs_f64(fell)),
            )
            .await;
            infra.impair(Impairment::Clear, netem)?;
            note = format!(
                "{}; i3's /ready failed {fell:.1}s into the partition",
                if netem {
                    "tc netem on both ends of the data link"
                } else {
                    "this kernel has no netem: loss and partition are nftables drop rules in the \
                     namespace, the delay is the relay's (25 ms each way)"
                }
            );
            until("i3 serves again", Duration::from_secs(60), || async {
                ready(addr).await
                    && haproxy_states(infra.stats_addr())
                        .await
                        .get("i3")
                        .is_some_and(|s| s == "UP")
            })
            .await?
        }
    };
    let outcome = load.await?;
    ensure!(
        infra.instances.len() == 3 && (0..3).all(|i| infra.instance_running(i)),
        "an instance exited during {}",
        fault.name()
    );
    let (lost_writes, lost_mails, duplicate_mails, resent_copies) =
        verify(api, sink, &outcome.acked).await?;
    if fault == Fault::KillInstance {
        // With the mail server up, a message attempted twice is one the killed worker had
        // claimed: another worker took it when the lease ran out.
        let reclaimed = infra.query(&format!(
            "SELECT count(*) FROM outbox WHERE created_at >= '{}' AND attempts > 1",
            since.to_rfc3339()
        ))?;
        note.push_str(&format!(
            "; {reclaimed} messages i2 had claimed when it died went out from another instance after the lease"
        ));
        ensure!(
            reclaimed.parse::<u64>().unwrap_or(0) > 0,
            "i2 held no claimed message when it was killed, so the hand-over was not exercised"
        );
    }
    Ok(Row {
        fault,
        acked: outcome.acked.len(),
        load: outcome.tally,
        lost_writes,
        lost_mails,
        duplicate_mails,
        resent_copies,
        recover,
        note,
    })
}

/// Seconds until every instance is ready, HAProxy has them all up and a create through it
/// gets an answer from an instance.
async fn serving_again(infra: &Infra, api: &Api) -> anyhow::Result<f64> {
    let probe = api.reset_call("probe@cluster.example");
    until(
        "the cluster serves again",
        Duration::from_secs(30),
        || async {
            all_up(infra).await
                && traffic::send(api.lb, &probe)
                    .await
                    .is_ok_and(|r| r.status < 500)
        },
    )
    .await
}

/// Every acknowledged reset is there with its `requested` event, and was mailed once:
/// `(lost writes, lost mails, resets mailed twice, extra copies of one mail)`.
async fn verify(
    api: &Api,
    sink: &SmtpSink,
    acked: &[String],
) -> anyhow::Result<(usize, usize, usize, usize)> {
    let queue = Arc::new(Mutex::new(acked.to_vec()));
    let lost = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (queue, lost) = (queue.clone(), lost.clone());
        let (lb, token) = (api.lb, api.integration.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().expect("queue").pop() else {
                    return;
                };
                let reset = Call::get(
                    format!("/api/customer_password_resets/{id}"),
                    "/api/customer_password_resets/{id}",
                    &token,
                );
                let events = Call::get(
                    format!("/api/customer_password_resets/{id}/events"),
                    "/api/customer_password_resets/{id}/events",
                    &token,
                );
                let found = traffic::send(lb, &reset)
                    .await
                    .is_ok_and(|r| r.status == 200)
                    && traffic::send(lb, &events).await.is_ok_and(|r| {
                        r.status == 200
                            && json_of(&r)["data"].as_array().is_some_and(|events| {
                                events
                                    .iter()
                                    .any(|e| e["attributes"]["name"] == "requested")
                            })
                    });
                if !found {
                    lost.lock().expect("lost").push(id);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let lost_writes = lost.lock().expect("lost").len();
    // A dead worker's claimed messages wait for their lease (15 s) before another takes
    // them; failed attempts back off.
    let _ = until(
        "every acknowledged reset mailed",
        Duration::from_secs(90),
        || async {
            let mails = reset_mails(sink);
            acked.iter().all(|id| mails.contains_key(id))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = reset_mails(sink);
    let lost_mails = acked.iter().filter(|id| !mails.contains_key(*id)).count();
    let duplicates = acked
        .iter()
        .filter(|id| mails.get(*id).is_some_and(|(ids, _)| ids.len() > 1))
        .count();
    let copies = acked
        .iter()
        .filter_map(|id| mails.get(id))
        .map(|(ids, copies)| copies - ids.len())
        .sum();
    Ok((lost_writes, lost_mails, duplicates, copies))
}
