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
//! A connection in the pool is not driven by anyone: whatever the upstream sent meanwhile (the end of
//! a stream, or its side closing the connection) is read when the connection is next taken, and a
//! connection found closed, or not ready at once, is dropped for the next one. A request a reused
//! connection turns out unable to take, before any of it was written, goes on another connection.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

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
    Url(String),
    /// No connection to the upstream could be made.
    #[error("cannot connect: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// An upstream's answer, its body read as it is polled.
pub type UpstreamResponse = Response<UpstreamBody>;

/// The client for HTTP upstreams: cheap to share, one per gateway.
pub struct UpstreamClient {
    connector: HttpsConnector<HttpConnector>,
    idle: Arc<IdleConnections>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client that gives up connecting after `connect_timeout`, and trusts the web's public
    /// certificate authorities (the Mozilla root set) for `https` upstreams.
    pub fn new(connect_timeout: Duration) -> Result<Self, UpstreamError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        // A request's head and body must not wait on each other's acknowledgement (Nagle).
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            connector,
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
            .map_err(|e| UpstreamError::Url(e.to_string()))?;
        let stream = self
            .connector
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

/// Where a connection goes: a scheme and an authority.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

/// `request` with its URI in origin form (the path and query) and a `Host` header, and the origin
/// it goes to.
fn origin_form(request: Request<Bytes>) -> Result<(Origin, Request<Bytes>), UpstreamError> {
    let (mut head, body) = request.into_parts();
    let uri = std::mem::take(&mut head.uri).into_parts();
    let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
        return Err(UpstreamError::Url(
            "an upstream URL needs a scheme and a host".into(),
        ));
    };
    head.uri = uri
        .path_and_query
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    if !head.headers.contains_key(header::HOST) {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| UpstreamError::Url(e.to_string()))?;
        head.headers.insert(header::HOST, host);
    }
    Ok((
        Origin { scheme, authority },
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
struct IdleConnections(Mutex<HashMap<Origin, VecDeque<Connection>>>);

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
