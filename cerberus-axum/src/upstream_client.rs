//! The client for HTTP upstreams: HTTP/1.1 over TCP or TLS, with the connections to each upstream
//! kept alive for the next request.
//!
//! A general-purpose client (reqwest, or hyper-util's pooled client under it) runs each connection as
//! a task of its own, and hands every request, answer and body chunk across to it: two tasks woken
//! per step, often on two threads. Here a connection is driven by the task that uses it, the request's
//! own task, while it sends the request and reads the answer; the bytes that end an answer are read in
//! the same poll as the answer itself, and the connection goes back to its pool at once. A gateway
//! needs none of a general client's extras either: a redirect is the upstream's answer to pass on, there
//! is no proxy to consult, and the URL was parsed when the configuration was read. (`docs/benchmarks.md`
//! measures the difference.)
//!
//! Connections for upstreams set through the admin API go only to the addresses the gateway's
//! [`EgressPolicy`] permits: the names are resolved by a resolver that drops the others, and an address
//! written in the URL is checked before connecting. Such connections are pooled apart from those of the
//! operator's upstreams, so a pooled connection never carries a tenant's request to a refused address.
//!
//! A connection in the pool is not driven by anyone: whatever the upstream sent meanwhile (the end of
//! a stream, or its side closing the connection) is read when the connection is next taken, and a
//! connection found closed, or not ready at once, is dropped for the next one. A request a reused
//! connection turns out unable to take, before any of it was written, goes on another connection.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cerberus_core::Cause;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::egress::EgressPolicy;

/// How long an unused connection is kept for the next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many unused connections are kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 64;

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The request's URL does not name an upstream (it needs a scheme and a host).
    #[error("not an upstream URL: {0}")]
    Url(#[source] Cause),
    /// The certificate authorities to trust cannot be used.
    #[error("certificate authorities: {0}")]
    Tls(#[source] Cause),
    /// No connection to the upstream could be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// An upstream's answer, its body read as it is polled.
pub type UpstreamResponse = Response<UpstreamBody>;

/// Marks a request (in its extensions) to an upstream the operator set in the configuration file,
/// whose addresses are not checked. A request without it is checked against the egress policy: a
/// path that forgets to say fails closed.
#[derive(Clone, Copy, Debug)]
pub struct SetByOperator;

type Connector = HttpsConnector<HttpConnector<EgressResolver>>;

/// The client for HTTP upstreams: cheap to share, one per gateway.
pub struct UpstreamClient {
    /// For the operator's upstreams: any address.
    open: Connector,
    /// For the others: the addresses the policy permits.
    checked: Connector,
    egress: Arc<EgressPolicy>,
    idle: Arc<IdleConnections>,
}

/// Resolves names with the system's resolver, keeping only the addresses a policy permits (every
/// address, without one). A name none of whose addresses is permitted fails to resolve.
#[derive(Clone)]
struct EgressResolver {
    system: GaiResolver,
    policy: Option<Arc<EgressPolicy>>,
}

impl tower::Service<Name> for EgressResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.system.call(name);
        let policy = self.policy.clone();
        Box::pin(async move {
            let addresses = resolving.await?;
            let Some(policy) = policy else {
                return Ok(addresses.collect::<Vec<_>>().into_iter());
            };
            let permitted: Vec<SocketAddr> = addresses
                .filter(|address| policy.permits(address.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "no address of the upstream's host may be reached",
                ));
            }
            Ok(permitted.into_iter())
        })
    }
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client that gives up connecting after `connect_timeout`, and trusts the web's public
    /// certificate authorities (the Mozilla root set) for `https` upstreams, and those of `extra_ca_pem`
    /// (PEM certificates, for upstreams whose certificates an organisation's own authority signs).
    ///
    /// Upstreams the operator did not set reach only the addresses `egress` permits.
    pub fn new(
        connect_timeout: Duration,
        extra_ca_pem: Option<&[u8]>,
        egress: EgressPolicy,
    ) -> Result<Self, UpstreamError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = extra_ca_pem {
            let mut added = 0;
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|e| UpstreamError::Tls(Cause::new(e)))?;
                roots
                    .add(certificate)
                    .map_err(|e| UpstreamError::Tls(Cause::new(e)))?;
                added += 1;
            }
            if added == 0 {
                return Err(UpstreamError::Tls(Cause::message(
                    "no PEM certificate in it",
                )));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(Cause::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let egress = Arc::new(egress);
        let connector = |policy: Option<Arc<EgressPolicy>>| {
            let resolver = EgressResolver {
                system: GaiResolver::new(),
                policy,
            };
            let mut http = HttpConnector::new_with_resolver(resolver);
            http.enforce_http(false);
            http.set_connect_timeout(Some(connect_timeout));
            // A request's head and body must not wait on each other's acknowledgement (Nagle).
            http.set_nodelay(true);
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        Ok(Self {
            open: connector(None),
            checked: connector(Some(Arc::clone(&egress))),
            egress,
            idle: Arc::default(),
        })
    }

    /// Sends `request` (whose URI is the upstream's absolute URL) and returns the upstream's answer
    /// once its head has arrived. The body is read from the connection as it is polled.
    pub async fn send(&self, request: Request<Bytes>) -> Result<UpstreamResponse, UpstreamError> {
        let (origin, request) = origin_form(request)?;
        let mut request = request.map(Full::new);
        loop {
            let (mut connection, reused) = match self.idle.take(&origin) {
                Some(connection) => (connection, true),
                None => (self.connect(&origin).await?, false),
            };
            match connection.exchange(request).await {
                Ok(response) => {
                    let idle = Arc::clone(&self.idle);
                    return Ok(response.map(|body| {
                        // An answer without a body (202, 204) is complete already: no one will read
                        // it to its end, and the connection is free for the next request.
                        let connection = if body.is_end_stream() {
                            idle.put(origin.clone(), connection);
                            None
                        } else {
                            Some(connection)
                        };
                        UpstreamBody {
                            body,
                            connection,
                            idle,
                            origin,
                        }
                    }));
                }
                Err(mut failed) => match failed.take_message() {
                    // Nothing of it was written: a reused connection had closed meanwhile.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Connection, UpstreamError> {
        let uri = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Url(Cause::new(e)))?;
        let connector = if origin.checked {
            // An address in the URL is connected to without resolving: check it here.
            let host = origin.authority.host();
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(address) = literal.parse::<std::net::IpAddr>()
                && !self.egress.permits(address)
            {
                return Err(UpstreamError::Connect(
                    "the upstream's address may not be reached".into(),
                ));
            }
            &self.checked
        } else {
            &self.open
        };
        let stream = connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, driver) = http1::handshake(stream).await?;
        Ok(Connection {
            sender,
            driver: Box::pin(driver),
            closed: false,
            idle_since: Instant::now(),
        })
    }
}

/// Where a connection goes: a scheme and an authority, and whether its addresses are checked (such
/// connections are pooled apart).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
    checked: bool,
}

/// `request` with its URI in origin form (the path and query) and a `Host` header, and the origin
/// it goes to.
fn origin_form(request: Request<Bytes>) -> Result<(Origin, Request<Bytes>), UpstreamError> {
    let (mut head, body) = request.into_parts();
    let uri = std::mem::take(&mut head.uri).into_parts();
    let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
        return Err(UpstreamError::Url(Cause::message(
            "an upstream URL needs a scheme and a host",
        )));
    };
    head.uri = uri
        .path_and_query
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    if !head.headers.contains_key(header::HOST) {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| UpstreamError::Url(Cause::new(e)))?;
        head.headers.insert(header::HOST, host);
    }
    let checked = head.extensions.get::<SetByOperator>().is_none();
    Ok((
        Origin {
            scheme,
            authority,
            checked,
        },
        Request::from_parts(head, body),
    ))
}

/// One HTTP/1.1 connection: the handle requests go through, and the state machine that reads and
/// writes its socket, driven by whoever uses the connection.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Pin<Box<http1::Connection<Stream, Full<Bytes>>>>,
    /// Whether the connection has ended (closed by either side, or failed).
    closed: bool,
    /// When it last went back to the pool.
    idle_since: Instant,
}

impl Connection {
    /// Reads and writes what the socket allows now; false once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closed && self.driver.as_mut().poll(cx).is_ready() {
            self.closed = true;
        }
        !self.closed
    }

    /// Whether the connection can take a request right now, after reading whatever the upstream sent
    /// while it was unused.
    fn ready_now(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Sends `request` and waits for the head of the answer, driving the connection meanwhile.
    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Full<Bytes>>>> {
        let mut answer = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            answer.as_mut().poll(cx)
        })
        .await
    }
}

/// The unused connections, by origin, the most recently used last.
#[derive(Default)]
struct IdleConnections(Mutex<HashMap<Origin, VecDeque<Connection>, foldhash::fast::RandomState>>);

impl IdleConnections {
    /// The most recently used connection to `origin` that can take a request now; the ones found
    /// closed, expired or busy are dropped (which closes them).
    fn take(&self, origin: &Origin) -> Option<Connection> {
        loop {
            let mut connection = {
                let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                idle.get_mut(origin)?.pop_back()?
            };
            if connection.idle_since.elapsed() < IDLE_TIMEOUT && connection.ready_now() {
                return Some(connection);
            }
        }
    }

    /// Keeps `connection` for the next request to `origin`, and lets go of the ones that have waited
    /// too long.
    fn put(&self, origin: Origin, mut connection: Connection) {
        let now = Instant::now();
        connection.idle_since = now;
        let expired: Vec<Connection>;
        {
            let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let queue = idle.entry(origin).or_default();
            let fresh = queue
                .iter()
                .position(|c| now.duration_since(c.idle_since) < IDLE_TIMEOUT)
                .unwrap_or(queue.len());
            expired = queue.drain(..fresh).collect();
            if queue.len() < MAX_IDLE_PER_UPSTREAM {
                queue.push_back(connection);
            }
        }
        // Closed outside the lock.
        drop(expired);
    }
}

/// The body of an upstream's answer. Reading it drives its connection; once read to the end, the
/// connection goes back to the pool. Dropped before its end, it closes the connection (which is how an
/// HTTP/1.1 client abandons an answer).
pub struct UpstreamBody {
    body: Incoming,
    connection: Option<Connection>,
    idle: Arc<IdleConnections>,
    origin: Origin,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(connection) = self.connection.take().filter(|c| !c.closed) {
                    self.idle.put(self.origin.clone(), connection);
                }
            }
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        polled
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = this.poll_body(cx) {
            return Poll::Ready(frame);
        }
        // The body waits for the connection: read what has arrived, then look again.
        match this.connection.as_mut() {
            Some(connection) => {
                connection.drive(cx);
                this.poll_body(cx)
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the scripted server does after reading a request.
    #[derive(Clone, Copy)]
    enum Reply {
        /// Writes these bytes and waits for the next request on the connection.
        KeepAlive(&'static str),
        /// Writes these bytes and closes the connection.
        ThenClose(&'static str),
        /// Writes these bytes and neither ends the answer nor closes the connection.
        Hang(&'static str),
    }

    const HELLO: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    const ACCEPTED: &str = "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
    const STREAM_START: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata:\n\r\n";

    /// A scripted HTTP/1.1 server on loopback that counts its connections and records the heads of
    /// the requests it reads.
    struct Server {
        url: String,
        connections: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn server(reply: fn(usize) -> Reply) -> Server {
        server_with(reply, None).await
    }

    /// The scripted server, speaking TLS with `tls` when given one (its URL is then `https` and names
    /// `localhost`).
    async fn server_with(
        reply: fn(usize) -> Reply,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/mcp?tenant=a"),
            None => format!("http://127.0.0.1:{port}/mcp?tenant=a"),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, d, h) = (connections.clone(), closed.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let (d, h, requests, tls) = (d.clone(), h.clone(), requests.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(socket) = tls.accept(socket).await {
                                serve_connection(socket, reply, &requests, &h).await;
                            }
                        }
                        None => serve_connection(socket, reply, &requests, &h).await,
                    }
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            url,
            connections,
            closed,
            heads,
        }
    }

    /// Answers the requests of one connection as `reply` says, until it closes or `reply` ends it.
    async fn serve_connection(
        mut socket: impl AsyncRead + AsyncWrite + Unpin,
        reply: fn(usize) -> Reply,
        requests: &AtomicUsize,
        heads: &Mutex<Vec<String>>,
    ) {
        let mut buffer = Vec::new();
        while let Some(head_end) = read_head(&mut socket, &mut buffer).await {
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the request body broke off");
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..head_end + length);
            heads.lock().unwrap().push(head);
            match reply(requests.fetch_add(1, Ordering::SeqCst)) {
                Reply::KeepAlive(bytes) => socket.write_all(bytes.as_bytes()).await.unwrap(),
                Reply::ThenClose(bytes) => {
                    socket.write_all(bytes.as_bytes()).await.unwrap();
                    return;
                }
                Reply::Hang(bytes) => {
                    socket.write_all(bytes.as_bytes()).await.unwrap();
                    // Until the client goes away.
                    let mut rest = [0u8; 64];
                    while socket.read(&mut rest).await.is_ok_and(|n| n > 0) {}
                    return;
                }
            }
        }
    }

    /// Reads until `buffer` holds a whole request head; its length, or none at the end of the stream.
    async fn read_head(
        socket: &mut (impl AsyncRead + Unpin),
        buffer: &mut Vec<u8>,
    ) -> Option<usize> {
        loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(at + 4);
            }
            // Not HTTP (a TLS handshake, say): the connection is closed, as a plain server would.
            if buffer.first().is_some_and(|b| !b.is_ascii_uppercase()) {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A POST to an upstream the operator set (the test servers are on loopback).
    fn post(url: &str, body: &'static str) -> Request<Bytes> {
        let mut request = checked_post(url, body);
        request.extensions_mut().insert(SetByOperator);
        request
    }

    /// A POST to an upstream set through the admin API.
    fn checked_post(url: &str, body: &'static str) -> Request<Bytes> {
        Request::post(url)
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap()
    }

    fn client() -> UpstreamClient {
        UpstreamClient::new(Duration::from_secs(5), None, EgressPolicy::default()).unwrap()
    }

    #[tokio::test]
    async fn upstreams_set_through_the_api_reach_only_permitted_addresses() {
        let server = server(|_| Reply::KeepAlive(HELLO)).await;
        let client = client();
        let port = server
            .url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        // Loopback, as an address, as IPv4 in IPv6, and as a name that resolves to it: refused
        // before any connection, with the error an unreachable upstream gives.
        for url in [
            server.url.clone(),
            format!("http://[::ffff:127.0.0.1]:{port}/mcp"),
            format!("http://localhost:{port}/mcp"),
        ] {
            let error = client.send(checked_post(&url, "{}")).await.unwrap_err();
            assert!(matches!(error, UpstreamError::Connect(_)), "{url}: {error}");
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 0);
        // The operator's upstream at the same address is reached, and its pooled connection is not
        // lent to a checked request.
        let answer = client.send(post(&server.url, "{}")).await.unwrap();
        answer.into_body().collect().await.unwrap();
        assert_eq!(idle_count(&client), 1);
        assert!(client.send(checked_post(&server.url, "{}")).await.is_err());
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        // An operator who allows loopback for the API's upstreams gets them through.
        let allowed = UpstreamClient::new(
            Duration::from_secs(5),
            None,
            EgressPolicy::new(
                vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                Vec::new(),
            ),
        )
        .unwrap();
        for url in [server.url.clone(), format!("http://localhost:{port}/mcp")] {
            let answer = allowed.send(checked_post(&url, "{}")).await;
            assert_eq!(answer.unwrap().status(), 200, "{url}");
        }
    }

    fn idle_count(client: &UpstreamClient) -> usize {
        client
            .idle
            .0
            .lock()
            .unwrap()
            .values()
            .map(VecDeque::len)
            .sum()
    }

    #[tokio::test]
    async fn answers_read_to_the_end_leave_their_connection_for_the_next_request() {
        let server = server(|_| Reply::KeepAlive(HELLO)).await;
        let client = client();
        for _ in 0..5 {
            let response = client.send(post(&server.url, "{}")).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "hello");
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        assert_eq!(idle_count(&client), 1);
        // Origin form, the host from the URL, and the body's length.
        let heads = server.heads.lock().unwrap();
        let first: Vec<&str> = heads[0].lines().collect();
        assert_eq!(first[0], "POST /mcp?tenant=a HTTP/1.1");
        let authority = server.url.split('/').nth(2).unwrap();
        assert!(
            first.contains(&format!("host: {authority}").as_str()),
            "{first:?}"
        );
        assert!(first.contains(&"content-length: 2"), "{first:?}");
    }

    #[tokio::test]
    async fn an_answer_without_a_body_frees_its_connection_unread() {
        let server = server(|_| Reply::KeepAlive(ACCEPTED)).await;
        let client = client();
        for _ in 0..3 {
            let response = client.send(post(&server.url, "{}")).await.unwrap();
            assert_eq!(response.status(), 202);
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_get_connections_of_their_own_and_all_are_kept() {
        let server = server(|_| Reply::KeepAlive(HELLO)).await;
        let client = client();
        let (a, b) = tokio::join!(
            client.send(post(&server.url, "{}")),
            client.send(post(&server.url, "{}"))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
        a.into_body().collect().await.unwrap();
        b.into_body().collect().await.unwrap();
        assert_eq!(idle_count(&client), 2);
    }

    #[tokio::test]
    async fn an_answer_abandoned_midway_closes_its_connection_and_the_next_request_gets_a_new_one()
    {
        let server = server(|n| {
            if n == 0 {
                Reply::Hang(STREAM_START)
            } else {
                Reply::KeepAlive(HELLO)
            }
        })
        .await;
        let client = client();
        let response = client.send(post(&server.url, "{}")).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "data:\n");
        drop(body);
        let response = client.send(post(&server.url, "{}")).await.unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "hello"
        );
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
        // The server saw the abandoned connection close.
        while server.closed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_unused_is_replaced() {
        // Each answer says nothing of closing, then the server closes: as an upstream does whose
        // keep-alive time ran out between two requests.
        let server = server(|_| Reply::ThenClose(HELLO)).await;
        let client = client();
        for round in 1..=3 {
            let response = client.send(post(&server.url, "{}")).await.unwrap();
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "hello"
            );
            while server.closed.load(Ordering::SeqCst) < round {
                tokio::task::yield_now().await;
            }
            // Lets the runtime's reactor take in the closed connection's end.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 3);
        assert_eq!(idle_count(&client), 0);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = client()
            .send(post(&format!("http://{address}/mcp"), "{}"))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error}");
    }

    #[tokio::test]
    async fn https_never_falls_back_to_plain_text() {
        let server = server(|_| Reply::KeepAlive(HELLO)).await;
        let url = server.url.replace("http://", "https://");
        let error = client().send(post(&url, "{}")).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error}");
        assert!(server.heads.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_url_without_a_host_is_refused() {
        let error = client().send(post("/mcp", "{}")).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Url(_)), "{error}");
    }

    /// A private certificate authority (its certificate in PEM) and a TLS acceptor for `localhost`
    /// with a certificate it signed, as an organisation's internal upstream would have.
    fn private_authority() -> (String, tokio_rustls::TlsAcceptor) {
        let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let authority =
            rcgen::CertifiedIssuer::self_signed(authority, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &authority)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        (
            authority.pem(),
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        )
    }

    #[tokio::test]
    async fn https_upstreams_signed_by_an_added_authority_are_reached_and_kept_alive() {
        let (authority, tls) = private_authority();
        let server = server_with(|_| Reply::KeepAlive(HELLO), Some(tls)).await;
        let client = UpstreamClient::new(
            Duration::from_secs(5),
            Some(authority.as_bytes()),
            EgressPolicy::default(),
        )
        .unwrap();
        for _ in 0..3 {
            let response = client.send(post(&server.url, "{}")).await.unwrap();
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "hello"
            );
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        let heads = server.heads.lock().unwrap();
        assert_eq!(heads.len(), 3);
        assert!(
            heads[0].starts_with("POST /mcp?tenant=a HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
    }

    #[tokio::test]
    async fn https_upstreams_signed_by_an_unknown_authority_are_refused() {
        let (_, tls) = private_authority();
        let server = server_with(|_| Reply::KeepAlive(HELLO), Some(tls)).await;
        let error = client().send(post(&server.url, "{}")).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error}");
        assert!(server.heads.lock().unwrap().is_empty());
    }

    #[test]
    fn an_authority_file_without_a_certificate_is_refused() {
        for pem in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let error =
                UpstreamClient::new(Duration::from_secs(5), Some(pem), EgressPolicy::default())
                    .unwrap_err();
            assert!(matches!(error, UpstreamError::Tls(_)), "{error}");
        }
    }
}
