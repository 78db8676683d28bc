//! A TCP proxy that can go silent: while frozen it keeps every connection open and
//! forwards nothing, as a network path that drops every packet does. For tests of what
//! the application does when its database stops answering mid-conversation.

use std::net::SocketAddr;
use std::sync::Arc;
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
    task: JoinHandle<()>,
}

impl Freezer {
    /// Listens on a free local port and forwards each connection to `upstream`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let frozen = Arc::new(watch::channel(false).0);
        let state = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = state.subscribe();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pipe(cr, sw, state.clone()), pipe(sr, cw, state));
                    }
                });
            }
        });
        Self { addr, frozen, task }
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, old and new.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while frozen.
async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut frozen: watch::Receiver<bool>,
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
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
