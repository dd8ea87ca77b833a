//! A fault-injecting HTTP proxy in front of an S3 server (the test server of
//! `STRONGROOM_TEST_S3_ENDPOINT`), for the object-store fault tests: it answers some requests
//! itself with `503 SlowDown`, cuts some GET bodies short (the connection drops mid-body),
//! acknowledges some PUTs without storing them, makes listings page every few keys, and can
//! fail every listing page after the first. It counts what it injected, so a test can show
//! that faults did happen.
//!
//! It forwards everything else unchanged but the `Host` (the test server does not check
//! signatures). For tests only: it panics on setup failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// What to inject. Rates are per thousand requests of the kind.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer `503 SlowDown` instead of forwarding (any request).
    pub server_error_per_mille: u64,
    /// Cut a successful GET's body short: the connection drops after half of it.
    pub truncate_get_per_mille: u64,
    /// Acknowledge, without storing, every PUT whose path contains this.
    pub lose_puts_containing: Option<String>,
    /// Make listings return pages of this many keys (rewrites `max-keys`).
    pub list_max_keys: Option<u32>,
    /// Fail (503) every listing page after the first.
    pub fail_later_list_pages: bool,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: give it as the S3 endpoint.
    pub endpoint: String,
    inner: Arc<Inner>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Debug)]
struct Inner {
    upstream: String,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    injected: AtomicU64,
    forwarded: AtomicU64,
    client: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) injecting `faults`, its choices
    /// drawn from `seed`.
    pub fn start(upstream: &str, faults: Faults, seed: u64) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: Mutex::new(faults),
            rng: Mutex::new(seed | 1),
            injected: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            endpoint,
            inner,
            _runtime: runtime,
        }
    }

    /// Replaces the faults to inject from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.lock().unwrap() = faults;
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.inner.injected.load(Ordering::Relaxed)
    }

    /// How many requests were forwarded to the server so far.
    pub fn forwarded(&self) -> u64 {
        self.inner.forwarded.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// True with probability `per_mille`/1000 (xorshift64).
    fn roll(&self, per_mille: u64) -> bool {
        if per_mille == 0 {
            return false;
        }
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 1000 < per_mille
    }

    fn inject(&self) {
        self.injected.fetch_add(1, Ordering::Relaxed);
    }
}

fn slow_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate (injected).</Message></Error>",
    )
        .into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let faults = inner.faults.lock().unwrap().clone();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let mut query = parts.uri.query().unwrap_or_default().to_owned();
    let is_list = method == axum::http::Method::GET && query.contains("list-type=2");
    if is_list && faults.fail_later_list_pages && query.contains("continuation-token=") {
        inner.inject();
        return slow_down();
    }
    if inner.roll(faults.server_error_per_mille) {
        inner.inject();
        return slow_down();
    }
    if method == axum::http::Method::PUT
        && faults
            .lose_puts_containing
            .as_deref()
            .is_some_and(|p| path.contains(p))
    {
        inner.inject();
        return StatusCode::OK.into_response();
    }
    if is_list && let Some(n) = faults.list_max_keys {
        query = query
            .split('&')
            .map(|kv| {
                if kv.starts_with("max-keys=") {
                    format!("max-keys={n}")
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
    }
    let url = if query.is_empty() {
        format!("{}{path}", inner.upstream)
    } else {
        format!("{}{path}?{query}", inner.upstream)
    };
    let mut forward = inner.client.request(method.clone(), &url);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    inner.forwarded.fetch_add(1, Ordering::Relaxed);
    let answer = match forward.body(body).send().await {
        Ok(a) => a,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            headers.insert(name, value.clone());
        }
    }
    let Ok(bytes) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let ok_get = method == axum::http::Method::GET && status.is_success() && !is_list;
    if ok_get && bytes.len() > 1 && inner.roll(faults.truncate_get_per_mille) {
        inner.inject();
        // The header promises every byte; the body stops halfway and the connection drops.
        let half = bytes.slice(..bytes.len() / 2);
        let stream = futures::stream::iter([
            Ok::<Bytes, std::io::Error>(half),
            Err(std::io::Error::other(
                "injected: connection dropped mid-body",
            )),
        ]);
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(&bytes.len().to_string()).unwrap(),
        );
        let mut resp = Response::new(Body::from_stream(stream));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        return resp;
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
