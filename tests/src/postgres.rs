//! Finding or starting a PostgreSQL server for tests, and fresh databases on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::{Mutex, OnceCell};

/// The server that tests use, as an admin URL without a database name.
static SERVER: OnceCell<String> = OnceCell::const_new();
/// Serializes template creation and cloning within this process.
static CLONE_LOCK: Mutex<()> = Mutex::const_new(());

const DEFAULT_LOCAL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct FreshDb {
    pub name: String,
    pub url: String,
}

fn with_db(server: &str, db: &str) -> String {
    format!("{}/{db}", server.trim_end_matches('/'))
}

/// `url` with its host and port replaced by `addr` (`host:port`): the same database and
/// user through a pooler in front of the server.
#[must_use]
pub fn through(url: &str, addr: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let end = rest
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let start = url[after_scheme..end]
        .rfind('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    format!("{}{addr}{}", &url[..start], &url[end..])
}

async fn answers(url: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

/// The server tests use: configured, local, or a throwaway cluster.
///
/// # Panics
/// When no server is configured, none answers locally and none can be started.
pub async fn server() -> &'static str {
    SERVER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("PWRESET_TEST_DATABASE_URL") {
                let server = strip_database(&url);
                assert!(
                    answers(&with_db(&server, "postgres")).await,
                    "PWRESET_TEST_DATABASE_URL={url} does not answer; start that server or unset the variable"
                );
                return server;
            }
            if std::env::var("PWRESET_TEST_PG_SPAWN").is_err()
                && answers(&with_db(DEFAULT_LOCAL, "postgres")).await
            {
                return DEFAULT_LOCAL.to_owned();
            }
            match start_throwaway_cluster().await {
                Ok(url) => url,
                Err(why) => panic!(
                    "No PostgreSQL server for the tests: {why}\n\
                     Either set PWRESET_TEST_DATABASE_URL=postgres://user@host:port to a server \
                     where that user may create databases, run one on 127.0.0.1:5432 with user \
                     `postgres` and trust auth, or install the server binaries (Debian/Ubuntu: \
                     `apt-get install postgresql`) so the tests can start their own."
                ),
            }
        })
        .await
}

fn strip_database(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => url[..after_scheme + slash].to_owned(),
        None => url.to_owned(),
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as the `postgres` user when we are root.
fn server_command(bin: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts (or reuses) a cluster under `target/pwreset-test-pg`. It keeps running after the
/// tests so the next run starts fast; `pg_ctl -D target/pwreset-test-pg/data stop` ends it.
async fn start_throwaway_cluster() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pwreset-test-pg");
    let port = run_cluster(&root, "-c max_connections=200", |_| Ok(())).await?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}

/// Starts the cluster whose data directory is `root/data` (made with `initdb` if missing)
/// on a free port of 127.0.0.1 with its socket in `root`, fsync off and `settings`
/// (`-c name=value ...`), unless the one started before (port in `root/port`) still
/// answers; its port. `prepare` runs on `root` before it is given to the `postgres` user
/// (when we are root) and before the server starts.
async fn run_cluster(
    root: &Path,
    settings: &str,
    prepare: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<u16, String> {
    let initdb = find_binary("initdb")
        .ok_or("`initdb` was not found on PATH or under /usr/lib/postgresql")?;
    let pg_ctl = find_binary("pg_ctl").ok_or("`pg_ctl` was not found next to initdb")?;
    let data = root.join("data");
    let port_file = root.join("port");
    if let Ok(port) = std::fs::read_to_string(&port_file)
        && let Ok(port) = port.trim().parse::<u16>()
        && answers(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await
    {
        return Ok(port);
    }
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    prepare(root)?;
    let as_postgres = is_root();
    if as_postgres {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root)
            .status()
            .map_err(|e| format!("chown failed: {e}"))?;
        if !status.success() {
            return Err("cannot give the cluster directory to the `postgres` user".into());
        }
    }
    if !data.join("PG_VERSION").exists() {
        let out = server_command(&initdb, as_postgres)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let out = server_command(&pg_ctl, as_postgres)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(root.join("server.log"))
        .args(["-w", "-t", "30", "-o"])
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {settings}",
            root.display()
        ))
        .arg("start")
        .output()
        .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}{} (see {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            root.join("server.log").display()
        ));
    }
    let _ = std::fs::write(&port_file, port.to_string());
    Ok(port)
}

/// Names the schema for the template cache: the last version and a fold of every script's
/// checksum (sqlx's SHA-384 of each), so a new or edited script makes a new template.
fn schema_checksum() -> String {
    let migrations = pwreset_adapter_postgres::migrator();
    let mut fold: u64 = 0;
    for m in migrations.iter() {
        let mut head = [0u8; 8];
        for (dst, src) in head.iter_mut().zip(m.checksum.iter()) {
            *dst = *src;
        }
        fold = fold.rotate_left(7) ^ u64::from_be_bytes(head);
    }
    let last = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    format!("v{last}_{fold:016x}")
}

async fn admin() -> PgConnection {
    let url = with_db(server().await, "postgres");
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(drop)
}

/// Makes sure the migrated template for the current schema exists.
async fn ensure_template(conn: &mut PgConnection) -> String {
    let template = format!("pwreset_tpl_{}", schema_checksum());
    // Across processes: one creator at a time.
    exec(conn, "SELECT pg_advisory_lock(7324150002)".into())
        .await
        .expect("advisory lock");
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&template)
        .fetch_optional(&mut *conn)
        .await
        .expect("pg_database lookup");
    if exists.is_none() {
        let building = format!("{template}_building");
        let _ = exec(conn, format!("DROP DATABASE IF EXISTS {building}")).await;
        exec(conn, format!("CREATE DATABASE {building}"))
            .await
            .expect("create template database");
        {
            let driver =
                pwreset_adapter_postgres::PgDriver::connect(&with_db(server().await, &building), 1)
                    .await
                    .expect("connect to template database");
            pwreset_adapter_postgres::migrate(driver.pool())
                .await
                .expect("migrate template database");
            driver.pool().close().await;
        }
        exec(
            conn,
            format!("ALTER DATABASE {building} RENAME TO {template}"),
        )
        .await
        .expect("publish template database");
    }
    exec(conn, "SELECT pg_advisory_unlock(7324150002)".into())
        .await
        .expect("advisory unlock");
    template
}

/// A new database cloned from the migrated template.
pub async fn fresh_database() -> FreshDb {
    let _guard = CLONE_LOCK.lock().await;
    let mut conn = admin().await;
    let template = ensure_template(&mut conn).await;
    let name = format!("pwreset_test_{}", uuid::Uuid::new_v4().simple());
    let mut attempts = 0;
    loop {
        match exec(
            &mut conn,
            format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await
        {
            Ok(()) => break,
            // Another process may be cloning the same template at this instant.
            Err(e) if attempts < 50 && e.to_string().contains("being accessed by other users") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database from {template}: {e}"),
        }
    }
    let _ = conn.close().await;
    FreshDb {
        url: with_db(server().await, &name),
        name,
    }
}

/// Drops a test database, ending any connection still open to it.
pub async fn drop_database(name: &str) {
    let mut conn = admin().await;
    if let Err(e) = exec(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
    {
        eprintln!("warning: could not drop test database {name}: {e}");
    }
    let _ = conn.close().await;
}

/// A Postgres cluster of the tests' own that speaks TLS, with the CA that signed its
/// certificate (for `localhost` only) and an unrelated CA.
#[derive(Debug, Clone)]
pub struct TlsCluster {
    pub port: u16,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server has.
    pub other_ca: PathBuf,
}

static TLS_CLUSTER: OnceCell<TlsCluster> = OnceCell::const_new();

/// Makes sure the `openssl` command is there: when it is missing it installs Debian's
/// `openssl` package with apt-get (as the browser check installs chromium), saying so, or
/// says what to install where there is no apt-get.
fn ensure_openssl() -> Result<(), String> {
    let present = || {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    if find_binary("apt-get").is_none() {
        return Err("the `openssl` command is missing and there is no apt-get: install OpenSSL's command-line tool".into());
    }
    eprintln!("tests: `openssl` is missing: installing Debian's openssl package with apt-get");
    let apt = |args: &[&str]| {
        let mut c = if is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))
    };
    apt(&["update", "-qq"])?;
    let out = apt(&["install", "-y", "-qq", "openssl"])?;
    if out.status.success() && present() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl (Debian: apt-get install openssl): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA (`NAME.crt`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN=pwreset test {name}"),
        ],
    )
}

/// Makes the certificates under `dir` when they are missing: a CA, a server certificate
/// it signs for `localhost`, and an unrelated CA.
fn make_certificates(dir: &Path) -> Result<(), String> {
    if dir.join("server.crt").exists() && dir.join("other-ca.crt").exists() {
        return Ok(());
    }
    ensure_openssl()?;
    make_ca(dir, "ca")?;
    make_ca(dir, "other-ca")?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| format!("cannot write server.ext: {e}"))?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )
}

/// Starts (or reuses) a cluster with `ssl = on` under `target/pwreset-test-pg-tls`, with
/// certificates made by `openssl`. Like the throwaway cluster, it keeps running after the
/// tests; `pg_ctl -D target/pwreset-test-pg-tls/data stop` ends it.
///
/// # Panics
/// When `initdb`, `pg_ctl` or `openssl` is missing or fails, saying which.
pub async fn tls_cluster() -> TlsCluster {
    TLS_CLUSTER
        .get_or_init(|| async {
            start_tls_cluster()
                .await
                .unwrap_or_else(|why| panic!("cannot start the TLS test cluster: {why}"))
        })
        .await
        .clone()
}

async fn start_tls_cluster() -> Result<TlsCluster, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pwreset-test-pg-tls");
    let root = std::fs::create_dir_all(&root)
        .and_then(|()| root.canonicalize())
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let certs = root.join("certs");
    let settings = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    );
    let port = run_cluster(&root, &settings, |_| {
        std::fs::create_dir_all(&certs).map_err(|e| format!("cannot create certs: {e}"))?;
        make_certificates(&certs)?;
        // The server refuses a key others can read.
        let _ = Command::new("chmod")
            .arg("600")
            .arg(certs.join("server.key"))
            .status();
        Ok(())
    })
    .await?;
    Ok(TlsCluster {
        port,
        ca: certs.join("ca.crt"),
        other_ca: certs.join("other-ca.crt"),
    })
}
