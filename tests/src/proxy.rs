//! A TCP proxy that can go silent or slow: while frozen it keeps every connection open and
//! forwards nothing, as a network path that drops every packet does; with a delay it holds
//! each chunk that long in each direction. For tests of what the application does when
//! its database stops answering mid-conversation, or answers from far away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy on a local port to `upstream`.
#[derive(Debug)]
pub struct Freezer {
    pub addr: SocketAddr,
    frozen: Arc<watch::Sender<bool>>,
    /// Milliseconds each chunk waits in each direction.
    delay: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Freezer {
    /// Listens on a free local port and forwards each connection to `upstream`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_on("127.0.0.1:0", upstream).await
    }

    /// [`Freezer::start`] listening on `listen` (`ip:port`, port 0 for any).
    ///
    /// # Panics
    /// When `listen` cannot be bound.
    pub async fn start_on(listen: &str, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let frozen = Arc::new(watch::channel(false).0);
        let delay = Arc::new(AtomicU64::new(0));
        let (state, wait) = (frozen.clone(), delay.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = state.subscribe();
                let wait = wait.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(
                            pipe(cr, sw, state.clone(), wait.clone()),
                            pipe(sr, cw, state, wait)
                        );
                    }
                });
            }
        });
        Self {
            addr,
            frozen,
            delay,
            task,
        }
    }

    /// Holds every chunk `delay` in each direction from now on (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.delay.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, old and new.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while frozen and for the delay.
async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut frozen: watch::Receiver<bool>,
    delay: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A frozen path delivers nothing; what was sent meanwhile arrives when it thaws,
        // as TCP's retransmissions would bring it.
        while *frozen.borrow_and_update() {
            if tokio::time::timeout(Duration::from_secs(60), frozen.changed())
                .await
                .is_err()
            {
                return;
            }
        }
        let wait = delay.load(Ordering::Relaxed);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
