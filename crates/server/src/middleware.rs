//! Middlewares that apply to every answer: security headers, a request timeout, and the error
//! envelope (every error is JSON in the envelope of its API family, including axum's own
//! rejections, 404 and 405).
//!
//! Must not change successful answers' bodies.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorStyle, RenderedError};
use crate::state::AppState;

fn is_compat(path: &str) -> bool {
    path.starts_with("/api/utils/")
        || path.starts_with("/api/system/")
        || path.starts_with("/api/auth/")
}

/// Security headers on every answer; `no-store` on everything (API answers are personal).
/// The content security policy forbids everything unless the route set its own (the
/// dashboard's page).
pub(crate) async fn security_headers(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if state.options().hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// Gives up on a request whose answer is not ready in time (streamed bodies are not
/// limited: the limit is on producing the head).
pub(crate) async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.options().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable("the request took too long; try again").into_response(),
    }
}

/// Re-renders errors that are not in their family's envelope: axum's rejections (text),
/// empty 404/405 answers, and v1 errors produced by extractors on compatibility paths. Every
/// error body then goes through the redactor: an error message may quote what a client sent
/// or what a tool said, and no configured secret leaves in one.
pub(crate) async fn envelope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if status.as_u16() < 400 {
        return resp;
    }
    let resp = render(resp, &path, &method).await;
    redact_body(&state, resp).await
}

/// An error body with every configured secret replaced (error bodies are small).
async fn redact_body(state: &AppState, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return ApiError::internal("an error body could not be read").into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    let redacted = state.redact(&text);
    if redacted == text {
        return Response::from_parts(parts, Body::from(bytes));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(redacted))
}

async fn render(resp: Response, path: &str, method: &Method) -> Response {
    let status = resp.status();
    let compat = is_compat(path);
    if let Some(rendered) = resp.extensions().get::<RenderedError>().cloned() {
        if compat && rendered.style == ErrorStyle::V1 {
            return ApiError::new(status, "error", rendered.message)
                .compat()
                .into_response();
        }
        return resp;
    }
    // Not ours: read the (small, textual) body for its message.
    let allow = resp.headers().get(header::ALLOW).cloned();
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut out = error_for(status, method, &text, compat).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

fn error_for(status: StatusCode, method: &Method, text: &str, compat: bool) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            if compat {
                "Not found.".to_owned()
            } else {
                "no such route".to_owned()
            },
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            if compat {
                format!("Method \"{method}\" not allowed.")
            } else {
                format!("method {method} is not allowed here")
            },
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            non_empty(text, "unsupported content type"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            non_empty(text, "the request body is too large"),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => {
            ("invalid", non_empty(text, "the request is not valid"))
        }
        s if s.is_client_error() => ("bad_request", non_empty(text, "bad request")),
        _ => (
            "internal",
            "internal server error; the details are in the server log".to_owned(),
        ),
    };
    let e = ApiError::new(status, code, message);
    if !compat {
        return e;
    }
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => e.styled(ErrorStyle::Detail),
        _ => e.compat(),
    }
}

fn non_empty(text: &str, default: &str) -> String {
    if text.is_empty() {
        default.to_owned()
    } else {
        text.chars().take(500).collect()
    }
}

/// The answer to unknown paths.
pub(crate) async fn fallback() -> Response {
    (StatusCode::NOT_FOUND, Body::empty()).into_response()
}
