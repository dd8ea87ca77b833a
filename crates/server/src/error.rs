//! The one error type of the server, [`ApiError`], and the one place errors become HTTP.
//!
//! Four envelopes exist because the clinic's page reads them: the API v1 envelope
//! `{"error": {"code", "message"}}`, the compatibility envelope `{"success": false, "error"}`,
//! the legacy `{"error"}` and DRF's `{"detail"}`. Internal errors are logged here (through the
//! state's redactor by the caller) and answered with a generic message: what must not happen
//! here is a database message, a path or a secret reaching the client, or an HTML error page.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strongroom_catalog::CatalogError;

/// Which body shape an error is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"code": "...", "message": "..."}}` (API v1, metrics, everything else).
    V1,
    /// `{"success": false, "error": "..."}` (the compatibility API's backup endpoints).
    Compat,
    /// `{"error": "..."}` (the legacy compatibility endpoints).
    Legacy,
    /// `{"detail": "..."}` (DRF's authentication and method errors).
    Detail,
}

/// Marker put into the extensions of a rendered v1 error, so the envelope middleware can
/// re-render errors produced by extractors on compatibility paths.
#[derive(Debug, Clone)]
pub struct RenderedError {
    /// The human message.
    pub message: String,
    /// The style it was rendered in.
    pub style: ErrorStyle,
}

/// An error answer: status, stable code, human message, envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (v1 envelope only).
    pub code: &'static str,
    /// Human message, safe to show.
    pub message: String,
    /// The envelope.
    pub style: ErrorStyle,
    /// Extra fields merged into the body (e.g. `existing_job_id`).
    pub extra: Option<Value>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A v1 error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            style: ErrorStyle::V1,
            extra: None,
            retry_after: None,
        }
    }

    /// 400 bad request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 validation error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 404 not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 conflict.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 401 without (valid) credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 insufficient role.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 (e.g. no repository configured, too many event streams).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500 with a generic message. `detail` must already be redacted by the caller; it is
    /// logged, never sent.
    pub fn internal(detail: &str) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the details are in the server log",
        )
    }

    /// The same error in another envelope.
    pub fn styled(mut self, style: ErrorStyle) -> Self {
        self.style = style;
        self
    }

    /// In the compatibility envelope `{"success": false, "error"}`.
    pub fn compat(self) -> Self {
        self.styled(ErrorStyle::Compat)
    }

    /// In the legacy envelope `{"error"}`.
    pub fn legacy(self) -> Self {
        self.styled(ErrorStyle::Legacy)
    }

    /// With extra fields in the body.
    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// With a `Retry-After`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = match self.style {
            ErrorStyle::V1 => json!({"error": {"code": self.code, "message": self.message}}),
            ErrorStyle::Compat => json!({"success": false, "error": self.message}),
            ErrorStyle::Legacy => json!({"error": self.message}),
            ErrorStyle::Detail => json!({"detail": self.message}),
        };
        if let (Some(Value::Object(extra)), Some(obj)) = (&self.extra, body.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED && self.style == ErrorStyle::V1 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"strongroom\""),
            );
        }
        resp.extensions_mut().insert(RenderedError {
            message: self.message,
            style: self.style,
        });
        resp
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            CatalogError::AlreadyActive { existing_job_id } => ApiError::conflict(
                "already_active",
                format!(
                    "a job for this source and kind is already in progress (job {existing_job_id})"
                ),
            )
            .with_extra(json!({"existing_job_id": existing_job_id})),
            CatalogError::Conflict(m) => ApiError::conflict("conflict", m),
            CatalogError::Invalid(m) => ApiError::invalid(m),
            // Catalog messages never carry connection strings or passwords (its contract),
            // but they are internal: logged, not sent.
            other => ApiError::internal(&other.to_string()),
        }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
