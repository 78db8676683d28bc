//! A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its
//! next request as soon as the previous answer is read, for a fixed time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    /// The status that counts as success.
    pub expect: u16,
    /// The body's media type (when there is a body).
    pub content_type: &'static str,
}

/// The API's media type.
pub const JSON_API: &str = "application/vnd.api+json";
/// What OAuth clients send to `/oauth/token`.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// Called with the body of every answer that had the expected status.
pub type Observer = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A keep-alive connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
    auth: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            addr,
            // No token, no header: OAuth requests authenticate in their body.
            auth: if token.is_empty() {
                String::new()
            } else {
                format!("Authorization: Bearer {token}\r\n")
            },
        })
    }

    /// Sends `req` and reads the whole answer: `(status, body)`.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n{}Accept: application/vnd.api+json\r\n",
            req.method, req.path, self.addr, self.auth
        );
        if let Some(b) = &req.body {
            head.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n\r\n{b}",
                req.content_type,
                b.len()
            ));
        } else {
            head.push_str("\r\n");
        }
        self.stream.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(anyhow!("connection closed"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies: Vec<u32>,
}

impl Stats {
    /// Successful requests per second (errors do not count).
    pub fn rps(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        f64::from(self.latencies[i.min(self.latencies.len() - 1)]) / 1000.0
    }

    /// The mean latency in milliseconds.
    pub fn mean(&self) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let sum: u64 = self.latencies.iter().map(|&l| u64::from(l)).sum();
        sum as f64 / self.latencies.len() as f64 / 1000.0
    }

    pub fn max(&self) -> f64 {
        self.latencies
            .last()
            .map_or(0.0, |v| f64::from(*v) / 1000.0)
    }
}

/// Runs `connections` closed loops for `duration`; `next(i)` gives connection-local request
/// number `i`'s request, or `None` to stop that connection early.
pub async fn run(
    addr: SocketAddr,
    token: &str,
    connections: usize,
    duration: Duration,
    next: Arc<dyn Fn(u64) -> Option<Req> + Send + Sync>,
) -> anyhow::Result<Stats> {
    run_observed(addr, token, connections, duration, next, None).await
}

/// [`run`], handing each expected answer's body to `observe` (for scenarios whose next
/// request needs something from an earlier answer, such as a rotated refresh token).
pub async fn run_observed(
    addr: SocketAddr,
    token: &str,
    connections: usize,
    duration: Duration,
    next: Arc<dyn Fn(u64) -> Option<Req> + Send + Sync>,
    observe: Option<Observer>,
) -> anyhow::Result<Stats> {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let next = next.clone();
        let counter = counter.clone();
        let token = token.to_owned();
        let observe = observe.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &token).await?;
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let Some(req) = next(n) else { break };
                let t = Instant::now();
                match conn.send(&req).await {
                    Ok((status, body)) if status == req.expect => {
                        if let Some(f) = &observe {
                            f(&body);
                        }
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(addr, &token).await?;
                    }
                }
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        let (lat, errors) = t.await??;
        stats.requests += lat.len() as u64;
        stats.errors += errors;
        stats.latencies.extend(lat);
    }
    stats.elapsed = started.elapsed();
    stats.latencies.sort_unstable();
    Ok(stats)
}
