//! Real protocol peers for delivery tests: an SMTP server and a webhook receiver, both on
//! local ports, started by the tests themselves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl ReceivedMail {
    /// A header's value from the message data.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.data
            .split("\r\n\r\n")
            .next()?
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
    }

    /// The body with quoted-printable soft line breaks and `=3D` undone, good enough to
    /// find a link in.
    #[must_use]
    pub fn text(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }
}

/// A local server that records what its sessions receive. `T` is one received item.
#[derive(Debug)]
pub struct Recorder<T> {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<T>>>,
    refusing: Arc<AtomicBool>,
    /// Milliseconds each new session waits before its first byte (a slow server).
    slow: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl<T: Clone + std::fmt::Debug + Send + 'static> Recorder<T> {
    /// Listens on `addr` (port 0 for any), running `session` for every connection.
    ///
    /// # Panics
    /// When the address cannot be bound.
    async fn start<F, Fut>(addr: &str, session: F) -> Self
    where
        F: Fn(tokio::net::TcpStream, Arc<Mutex<Vec<T>>>) -> Fut + Send + Sync + Copy + 'static,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await.expect("bind a test sink");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(AtomicBool::new(false));
        let slow = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let store = received.clone();
        let down = refusing.clone();
        let wait = slow.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if down.load(Ordering::SeqCst) {
                    // A server that is down: the connection closes before a single byte.
                    drop(stream);
                    continue;
                }
                let store = store.clone();
                let wait = wait.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    let _ = session(stream, store).await;
                });
            }
        });
        Self {
            addr,
            received,
            refusing,
            slow,
            task,
        }
    }

    /// While `down`, every new connection is closed at once, unanswered: a server that is
    /// down, on an address that stays this sink's (no port is freed and bound again).
    pub fn set_down(&self, down: bool) {
        self.refusing.store(down, Ordering::SeqCst);
    }

    /// Every new session waits `delay` before the server says a word (zero: none).
    pub fn set_slow(&self, delay: Duration) {
        self.slow.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Everything received so far.
    #[must_use]
    pub fn received(&self) -> Vec<T> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until `n` items arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} items, got {}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening (open sessions end with their client).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A minimal SMTP server speaking enough of RFC 5321 for a real client: greeting, EHLO/HELO,
/// MAIL, RCPT, DATA (dot-terminated, dot-unstuffed), RSET, NOOP, QUIT.
pub type SmtpSink = Recorder<ReceivedMail>;

impl Recorder<ReceivedMail> {
    /// An SMTP server on `addr` (port 0 for any).
    pub async fn smtp(addr: &str) -> Self {
        Self::start(addr, session).await
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<ReceivedMail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_owned();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().trim_matches(['<', '>']).to_owned());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(unstuffed);
            }
            store.lock().expect("lock").push(ReceivedMail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else {
            write.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct ReceivedHook {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedHook {
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }
}

/// An HTTP/1.1 server that records every request and answers 200.
pub type WebhookSink = Recorder<ReceivedHook>;

impl Recorder<ReceivedHook> {
    /// A webhook receiver on a free local port.
    pub async fn webhooks() -> Self {
        Self::start("127.0.0.1:0", http_session).await
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }
}

async fn http_session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<ReceivedHook>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut headers = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        store
            .lock()
            .expect("lock")
            .push(ReceivedHook { headers, body });
        write
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
}
