//! A TCP fault proxy for outage tests (issue 12): placed between MediaNest and PostgreSQL (or
//! NATS), it forwards bytes both ways until a test cuts the open connections, refuses new
//! ones, or slows them down — what a database restart, a network partition or a slow link
//! looks like from the application's side, without touching the real server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug, Default)]
struct Faults {
    down: AtomicBool,
    delay_ms: AtomicU64,
    open: Mutex<Vec<AbortHandle>>,
}

impl Faults {
    fn cut_all(&self) {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(PoisonError::into_inner));
        for connection in open {
            connection.abort();
        }
    }
}

/// A running proxy on `127.0.0.1` (random port) to one upstream address. Stops when
/// dropped (its open connections with it).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    server: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
        self.faults.cut_all();
    }
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("the proxy has an address");
        let faults = Arc::new(Faults::default());
        let shared = Arc::clone(&faults);
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if shared.down.load(Ordering::SeqCst) {
                    drop(client); // refused: closed before a byte is exchanged
                    continue;
                }
                let delay = Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
                let connection = tokio::spawn(forward(client, upstream, delay));
                let mut open = shared.open.lock().unwrap_or_else(PoisonError::into_inner);
                open.retain(|c| !c.is_finished());
                open.push(connection.abort_handle());
            }
        });
        Self {
            addr,
            faults,
            server,
        }
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection at once (the peers see them reset); new ones are accepted.
    pub fn cut(&self) {
        self.faults.cut_all();
    }

    /// Takes the upstream away (`true`: open connections are cut and new ones refused) or
    /// brings it back.
    pub fn set_down(&self, down: bool) {
        self.faults.down.store(down, Ordering::SeqCst);
        if down {
            self.faults.cut_all();
        }
    }

    /// Delays every new connection by `delay` before it reaches the upstream.
    pub fn set_delay(&self, delay: Duration) {
        self.faults.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
