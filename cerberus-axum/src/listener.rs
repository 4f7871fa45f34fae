//! The gateway's HTTP server: its router on hyper's HTTP/1.1 connections, with the limits a listener
//! open to agents needs and `axum::serve` does not set.
//!
//! - **At most `max_connections` at once.** Past it, the listener stops accepting: new connections
//!   wait in the kernel's backlog instead of taking file descriptors that upstream and database
//!   connections need.
//! - **A request's head must arrive within `header_read_timeout`**, counted from when the connection
//!   starts waiting for one: a connection that sends nothing, sends its headers a byte at a time
//!   (slowloris), or stays idle between requests is closed.
//! - **A request's head is at most `max_header_bytes`**: a larger one gets 431 and the connection
//!   closes.
//!
//! How long a request's body may take is the proxy's `server.body_read_timeout_secs`. A graceful
//! shutdown stops accepting, lets every connection finish its request in flight, then returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How the server treats connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, or wait before its next one.
    pub header_read_timeout: Duration,
    /// The largest request head (the request line and the headers).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    /// 10,000 connections, 30 seconds for a head, heads of 64 KiB.
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// How long to wait before accepting again after the operating system refused to (out of file
/// descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops accepting and
/// returns once every connection has finished its request in flight.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    // Semaphore permits are u32s at most.
    let capacity =
        u32::try_from(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(capacity as usize));
    let (closing, closed) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes.max(1024))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small SSE writes must leave at once: without TCP_NODELAY, Nagle's algorithm and the
        // client's delayed acknowledgements add some 40 ms to every streamed answer.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        // Handlers that need the client's address (the login throttle) find it as axum's
        // `ConnectInfo`.
        let service = tower::util::MapRequest::new(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "a connection ended with an error");
                    }
                    return;
                }
                _ = closed.wait_for(|closed| *closed) => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every permit back: every connection has ended.
    let _ = permits.acquire_many(capacity).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Notified when `/slow` has started, and what lets it answer.
    #[derive(Default)]
    struct Gates {
        started: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    /// Serves a router with `/` and `/slow` (which answers once released) within `limits`; its
    /// address, the server, and what stops it.
    async fn start(
        limits: ConnectionLimits,
        gates: Arc<Gates>,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<()>,
        watch::Sender<()>,
    ) {
        let router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/peer",
                axum::routing::get(
                    |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                        std::net::SocketAddr,
                    >| async move { peer.to_string() },
                ),
            )
            .route(
                "/slow",
                axum::routing::get(move || {
                    let gates = Arc::clone(&gates);
                    async move {
                        gates.started.notify_one();
                        gates.release.notified().await;
                        "done"
                    }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(());
        let server = tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.changed().await;
        }));
        (address, server, stop)
    }

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            header_read_timeout: Duration::from_secs(1),
            max_header_bytes: 16 * 1024,
        }
    }

    /// Reads until the server closes the connection (a deadline fails the test, it does not pass it);
    /// what it sent.
    async fn until_closed(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out));
        read.await.expect("the server closed the connection").ok();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn handlers_see_the_client_address() {
        let (address, _server, _stop) = start(limits(16), Arc::default()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut stream).await;
        assert!(answer.ends_with(&local.to_string()), "{answer}");
    }

    #[tokio::test]
    async fn silent_slow_and_idle_connections_are_closed() {
        let (address, _server, _stop) = start(limits(16), Arc::default()).await;
        // Sends nothing at all.
        let mut silent = TcpStream::connect(address).await.unwrap();
        // Sends half a head, then nothing more (slowloris).
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
            .await
            .unwrap();
        // Makes a request, then stays idle on the kept-alive connection.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        for stream in [&mut silent, &mut slow] {
            let said = until_closed(stream).await;
            assert!(!said.contains("200 OK"), "{said}");
        }
        let said = until_closed(&mut idle).await;
        assert!(said.starts_with("HTTP/1.1 200 OK"), "{said}");
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431() {
        let (address, _server, _stop) = start(limits(16), Arc::default()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(300 * 1024)
        );
        // The server may close before reading it all.
        let _ = stream.write_all(head.as_bytes()).await;
        let said = until_closed(&mut stream).await;
        assert!(said.starts_with("HTTP/1.1 431"), "{said}");
    }

    #[tokio::test]
    async fn past_the_limit_a_connection_waits_for_one_to_end() {
        let (address, _server, _stop) = start(limits(2), Arc::default()).await;
        let mut idle: Vec<TcpStream> = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        // Served only once an idle connection is closed for its silence.
        let third = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let said = until_closed(&mut stream).await;
            (Instant::now(), said)
        });
        let mut first_closed = None;
        for stream in &mut idle {
            until_closed(stream).await;
            first_closed.get_or_insert(Instant::now());
        }
        let (answered, said) = third.await.unwrap();
        assert!(said.starts_with("HTTP/1.1 200 OK"), "{said}");
        assert!(
            answered >= first_closed.unwrap(),
            "the third connection was served while two were open"
        );
    }

    #[tokio::test]
    async fn a_shutdown_lets_the_requests_in_flight_finish() {
        let gates = Arc::new(Gates::default());
        let (address, server, stop) = start(limits(16), Arc::clone(&gates)).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The request is in flight; the server is told to stop; then the request may finish.
        gates.started.notified().await;
        stop.send(()).unwrap();
        gates.release.notify_one();
        let said = until_closed(&mut stream).await;
        assert!(said.contains("done"), "{said}");
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server returned once its connection ended")
            .unwrap();
    }
}
