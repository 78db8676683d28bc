//! The real parts of the cluster and their lifecycles: a Postgres cluster of its own,
//! PgBouncer, HAProxy, the network namespace one instance lives in, and the `pwreset
//! serve` processes. Everything started here is stopped by [`Infra`]'s `Drop`, whatever
//! happens to the check.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The namespace one instance runs in, and its two links to the host: HTTP (HAProxy to
/// the instance) and data (the instance to PgBouncer, Postgres and the mail sink). Faults
/// are put on the data link only, so the load balancer still reaches the instance.
pub const NETNS: &str = "pwreset-cluster";
const HTTP_HOST: &str = "pwrc-http0";
const HTTP_NS: &str = "pwrc-http1";
const DATA_HOST: &str = "pwrc-data0";
const DATA_NS: &str = "pwrc-data1";
pub const HTTP_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 7, 1);
pub const HTTP_NS_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 7, 2);
pub const DATA_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 8, 1);
const DATA_NS_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 8, 2);

/// What the data link of the namespace suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    Clear,
    /// 5% of packets lost each way (and 25 ms of delay each way with netem).
    Lossy,
    /// Every packet lost.
    Partition,
}

/// Runs a command to completion; its output on success, its stderr in the error.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Installs Debian's `package` when `command` is missing, saying so.
pub fn ensure(command: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(found) = on_path(command) {
        return Ok(found);
    }
    println!("cluster: {command} is missing; installing Debian's {package} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    if !install().is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status();
        if !install().is_ok_and(|s| s.success()) {
            bail!(
                "cannot install {package}: run `apt-get install {package}` as root, then try again"
            );
        }
    }
    on_path(command).with_context(|| format!("{package} installed but {command} not found"))
}

/// The directory of the newest installed Postgres server binaries.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").is_file());
    dirs.sort();
    if let Some(dir) = dirs.pop() {
        return Ok(dir);
    }
    if let Some(initdb) = on_path("initdb") {
        return Ok(initdb.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    ensure("initdb", "postgresql")?;
    postgres_bin()
}

/// A command that runs as the `postgres` user when we are root (Postgres refuses root,
/// and PgBouncer should not run as root either), exec'ed so that killing the child kills
/// the server.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn is_root() -> bool {
    run("id", &["-u"]).is_ok_and(|out| out.trim() == "0")
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
}

/// Stops `child` with SIGTERM, then SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    signal(child, "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(Stdio, Stdio)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

/// One `pwreset serve` process.
#[derive(Debug)]
pub struct Instance {
    pub name: String,
    /// Where it listens (and where HAProxy and the check reach it).
    pub addr: SocketAddr,
    /// Runs inside the namespace, reaching the data services over the data link.
    pub in_netns: bool,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// Everything the check started, stopped on drop.
#[derive(Debug)]
pub struct Infra {
    pub dir: PathBuf,
    pg_bin: PathBuf,
    pub pg_port: u16,
    pub bouncer_port: u16,
    pub haproxy_port: u16,
    pub stats_port: u16,
    bouncer: Option<Child>,
    haproxy: Option<Child>,
    pub instances: Vec<Instance>,
    netns: bool,
    postgres: bool,
}

impl Infra {
    /// A fresh working directory, the namespace and its links, Postgres and PgBouncer.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        if !is_root() {
            bail!(
                "the cluster check creates a network namespace and changes its links' queues: run it as root"
            );
        }
        ensure("ip", "iproute2")?;
        ensure("tc", "iproute2")?;
        ensure("setpriv", "util-linux")?;
        ensure("nft", "nftables")?;
        ensure("pgbouncer", "pgbouncer")?;
        ensure("haproxy", "haproxy")?;
        let pg_bin = postgres_bin()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut infra = Self {
            dir: dir.to_owned(),
            pg_bin,
            pg_port: free_port()?,
            bouncer_port: free_port()?,
            haproxy_port: free_port()?,
            stats_port: free_port()?,
            bouncer: None,
            haproxy: None,
            instances: Vec::new(),
            netns: false,
            postgres: false,
        };
        infra.netns_up()?;
        infra.postgres_init()?;
        infra.postgres_start()?;
        infra.create_database()?;
        infra.bouncer_start()?;
        Ok(infra)
    }

    fn netns_up(&mut self) -> anyhow::Result<()> {
        // Whatever an interrupted run left behind.
        netns_down();
        for (host, ns, host_ip, ns_ip) in [
            (HTTP_HOST, HTTP_NS, HTTP_HOST_IP, HTTP_NS_IP),
            (DATA_HOST, DATA_NS, DATA_HOST_IP, DATA_NS_IP),
        ] {
            let routes = run("ip", &["-4", "route", "show"])?;
            let net = format!(
                "{}.{}.{}.",
                host_ip.octets()[0],
                host_ip.octets()[1],
                host_ip.octets()[2]
            );
            if routes.contains(&net) {
                bail!(
                    "{net}0/24 is already routed on this machine; the check needs it for its namespace"
                );
            }
            if !self.netns {
                run("ip", &["netns", "add", NETNS])?;
                self.netns = true;
                run(
                    "ip",
                    &["netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
                )?;
            }
            run(
                "ip",
                &["link", "add", host, "type", "veth", "peer", "name", ns],
            )?;
            run("ip", &["link", "set", ns, "netns", NETNS])?;
            run(
                "ip",
                &["addr", "add", &format!("{host_ip}/24"), "dev", host],
            )?;
            run("ip", &["link", "set", host, "up"])?;
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    NETNS,
                    "ip",
                    "addr",
                    "add",
                    &format!("{ns_ip}/24"),
                    "dev",
                    ns,
                ],
            )?;
            run(
                "ip",
                &["netns", "exec", NETNS, "ip", "link", "set", ns, "up"],
            )?;
        }
        Ok(())
    }

    /// Whether this kernel has `tc netem` (some are built without it).
    pub fn has_netem(&self) -> bool {
        let probe = run(
            "ip",
            &[
                "netns", "exec", NETNS, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                "delay", "1ms",
            ],
        );
        let _ = run(
            "ip",
            &[
                "netns", "exec", NETNS, "tc", "qdisc", "del", "dev", "lo", "root",
            ],
        );
        probe.is_ok()
    }

    /// Impairs the data link in both directions: with `tc netem` where the kernel has it,
    /// else with nftables rules in the namespace that drop packets (at random for `Lossy`,
    /// all for `Partition`); the delay is then the relay's (see the caller).
    pub fn impair(&self, how: Impairment, netem: bool) -> anyhow::Result<()> {
        if netem {
            for (in_ns, dev) in [(false, DATA_HOST), (true, DATA_NS)] {
                let prefix: &[&str] = if in_ns {
                    &["netns", "exec", NETNS, "tc"]
                } else {
                    &[]
                };
                let program = if in_ns { "ip" } else { "tc" };
                let _ = run(
                    program,
                    &[prefix, &["qdisc", "del", "dev", dev, "root"]].concat(),
                );
                let args: &[&str] = match how {
                    Impairment::Clear => continue,
                    Impairment::Lossy => &["delay", "25ms", "loss", "5%"],
                    Impairment::Partition => &["loss", "100%"],
                };
                run(
                    program,
                    &[prefix, &["qdisc", "add", "dev", dev, "root", "netem"], args].concat(),
                )?;
            }
            return Ok(());
        }
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                NETNS,
                "nft",
                "delete",
                "table",
                "inet",
                "pwreset_cluster",
            ],
        );
        let verdict = match how {
            Impairment::Clear => return Ok(()),
            Impairment::Lossy => "numgen random mod 100 < 5 drop",
            Impairment::Partition => "drop",
        };
        let rules = format!(
            "table inet pwreset_cluster {{\n\
             \x20 chain input {{ type filter hook input priority 0; iifname \"{DATA_NS}\" {verdict}; }}\n\
             \x20 chain output {{ type filter hook output priority 0; oifname \"{DATA_NS}\" {verdict}; }}\n}}\n"
        );
        let file = self.dir.join("impair.nft");
        std::fs::write(&file, rules)?;
        run(
            "ip",
            &["netns", "exec", NETNS, "nft", "-f", &file.to_string_lossy()],
        )?;
        Ok(())
    }

    fn pg_data(&self) -> PathBuf {
        self.dir.join("pg")
    }

    fn postgres_init(&mut self) -> anyhow::Result<()> {
        if is_root() {
            run(
                "chown",
                &["-R", "postgres:postgres", &self.dir.to_string_lossy()],
            )?;
        }
        let out = as_postgres(&self.pg_bin.join("initdb"))
            .args(["-D", &self.pg_data().to_string_lossy(), "-U", "postgres"])
            .args(["--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!(
            "listen_addresses = '127.0.0.1,{DATA_HOST_IP}'\nport = {}\nunix_socket_directories = ''\n\
             max_connections = 300\nshared_buffers = 128MB\nfsync = on\n",
            self.pg_port
        );
        append(&self.pg_data().join("postgresql.conf"), &conf)?;
        append(
            &self.pg_data().join("pg_hba.conf"),
            &format!("host all all {DATA_HOST_IP}/24 trust\n"),
        )?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = as_postgres(&self.pg_bin.join("pg_ctl"))
            .args(["-D", &self.pg_data().to_string_lossy()])
            .args(["-l", &self.dir.join("postgres.log").to_string_lossy()])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `pg_ctl stop -m fast`.
    pub fn postgres_stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-m", "fast", "stop"])
    }

    pub fn postgres_start(&mut self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "start"])?;
        self.postgres = true;
        Ok(())
    }

    /// `pg_ctl restart -m fast`: every connection ends, the server comes back.
    pub fn postgres_restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-m", "fast", "restart"])
    }

    fn create_database(&self) -> anyhow::Result<()> {
        self.psql("postgres", "CREATE DATABASE pwreset")
            .map(drop)
            .context("cannot create the database")
    }

    /// One value from a query on the cluster's database, as text.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        self.psql("pwreset", sql)
    }

    /// `sql` run by psql on database `db` of the cluster's Postgres; what it printed.
    fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.pg_bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The URL of Postgres itself, from the host (`127.0.0.1`) or the namespace.
    pub fn postgres_url(&self, from_netns: bool, db: &str) -> String {
        let host = if from_netns {
            DATA_HOST_IP.to_string()
        } else {
            "127.0.0.1".into()
        };
        format!("postgres://postgres@{host}:{}/{db}", self.pg_port)
    }

    /// The URL of PgBouncer from the host.
    pub fn bouncer_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pwreset",
            self.bouncer_port
        )
    }

    fn bouncer_start(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.join("pgbouncer");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n")?;
        // Transaction pooling with PgBouncer's defaults but for: a wait for a server
        // connection shorter than pwreset's statement deadline (so a client waiting on a
        // database that is down gets an error, not silence), and room for three instances
        // and the suite's databases.
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1,{DATA_HOST_IP}\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = 20\n\
             max_db_connections = 100\nquery_wait_timeout = 2\nserver_connect_timeout = 2\n\
             server_login_retry = 1\nlogfile = {dir}/pgbouncer.log\nlog_connections = 0\nlog_disconnections = 0\n",
            pg = self.pg_port,
            port = self.bouncer_port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini)?;
        if is_root() {
            run(
                "chown",
                &["-R", "postgres:postgres", &dir.to_string_lossy()],
            )?;
        }
        let pgbouncer = ensure("pgbouncer", "pgbouncer")?;
        let (out, err) = log_file(&self.dir, "pgbouncer.stderr")?;
        let child = as_postgres(&pgbouncer)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start pgbouncer")?;
        self.bouncer = Some(child);
        wait_port(
            SocketAddr::from(([127, 0, 0, 1], self.bouncer_port)),
            Duration::from_secs(10),
        )
        .context("pgbouncer did not start listening (see pgbouncer/pgbouncer.log)")
    }

    /// Stops PgBouncer (SIGTERM: it closes every client connection) and starts it again.
    pub fn bouncer_restart(&mut self, down_for: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.bouncer.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        std::thread::sleep(down_for);
        self.bouncer_start()
    }

    /// HAProxy in front of `instances`, health-checking `/ready`, its own errors in
    /// JSON:API, its state on a stats page.
    pub fn haproxy_start(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.join("haproxy");
        std::fs::create_dir_all(&dir)?;
        let mut errorfiles = String::new();
        for (status, reason, code, detail) in [
            (
                502,
                "Bad Gateway",
                "BAD_GATEWAY",
                "The instance serving this request went away; try again",
            ),
            (
                503,
                "Service Unavailable",
                "NO_INSTANCE_AVAILABLE",
                "No instance can serve right now; try again shortly",
            ),
            (
                504,
                "Gateway Timeout",
                "GATEWAY_TIMEOUT",
                "The instance did not answer in time; try again",
            ),
        ] {
            let body = format!(
                r#"{{"errors":[{{"code":"{code}","detail":"{detail}","status":"{status}","title":"{reason}"}}]}}"#
            );
            let file = dir.join(format!("{status}.http"));
            std::fs::write(
                &file,
                format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.api+json\r\n\
                     Cache-Control: no-store\r\nRetry-After: 1\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                ),
            )?;
            errorfiles.push_str(&format!("    errorfile {status} {}\n", file.display()));
        }
        let servers: String = self
            .instances
            .iter()
            .map(|i| format!("    server {} {} check\n", i.name, i.addr))
            .collect();
        let cfg = format!(
            "global\n    maxconn 4000\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n\
             \x20   timeout server 15s\n    timeout queue 5s\n    retries 3\n    option redispatch\n\
             \x20   retry-on conn-failure\n{errorfiles}\n\
             frontend api\n    bind 127.0.0.1:{port}\n    default_backend pwreset\n\n\
             backend pwreset\n    balance roundrobin\n    option httpchk GET /ready\n    http-check expect status 200\n\
             \x20   default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2\n{servers}\n\
             listen stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n",
            port = self.haproxy_port,
            stats = self.stats_port,
        );
        std::fs::write(dir.join("haproxy.cfg"), cfg)?;
        let haproxy = ensure("haproxy", "haproxy")?;
        let (out, err) = log_file(&self.dir, "haproxy.log")?;
        let child = Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start haproxy")?;
        self.haproxy = Some(child);
        wait_port(self.haproxy_addr(), Duration::from_secs(10))
            .context("haproxy did not start listening")
    }

    pub fn haproxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.haproxy_port))
    }

    pub fn stats_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.stats_port))
    }

    /// Adds an instance (not started); the last one added with `in_netns` runs in the
    /// namespace.
    pub fn add_instance(
        &mut self,
        name: &str,
        in_netns: bool,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let port = free_port()?;
        let addr = if in_netns {
            SocketAddr::from((HTTP_NS_IP, port))
        } else {
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data)?;
        let mut env = env;
        env.push(("PWRESET_BIND".into(), addr.to_string()));
        env.push((
            "PWRESET_DATA_DIR".into(),
            data.to_string_lossy().into_owned(),
        ));
        self.instances.push(Instance {
            name: name.into(),
            addr,
            in_netns,
            env,
            child: None,
        });
        Ok(())
    }

    /// Starts instance `i` (`bin serve`), its output appended to `<name>.log`.
    pub fn instance_start(&mut self, i: usize, bin: &Path) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.dir, &format!("{}.log", self.instances[i].name))?;
        let instance = &mut self.instances[i];
        let mut cmd = if instance.in_netns {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", NETNS]).arg(bin);
            cmd
        } else {
            Command::new(bin)
        };
        cmd.arg("serve")
            .envs(instance.env.iter().map(|(k, v)| (k, v)))
            .stdout(out)
            .stderr(err);
        instance.child = Some(
            cmd.spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?,
        );
        Ok(())
    }

    /// `kill -9` of instance `i`.
    pub fn instance_kill(&mut self, i: usize) {
        if let Some(mut child) = self.instances[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether instance `i`'s process is still running.
    pub fn instance_running(&mut self, i: usize) -> bool {
        self.instances[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The environment instance `i` runs with (for the command-line tools).
    pub fn instance_env(&self, i: usize) -> &[(String, String)] {
        &self.instances[i].env
    }
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn wait_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr}")
}

fn netns_down() {
    for link in [HTTP_HOST, DATA_HOST] {
        let _ = Command::new("ip")
            .args(["link", "del", link])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new("ip")
        .args(["netns", "del", NETNS])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Infra {
    fn drop(&mut self) {
        for i in 0..self.instances.len() {
            if let Some(mut child) = self.instances[i].child.take() {
                terminate(&mut child, Duration::from_secs(10));
            }
        }
        if let Some(mut child) = self.haproxy.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if let Some(mut child) = self.bouncer.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if self.postgres {
            let _ = self.pg_ctl(&["-w", "-m", "fast", "stop"]);
        }
        if self.netns {
            netns_down();
        }
    }
}
