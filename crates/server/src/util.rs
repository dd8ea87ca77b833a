//! Small helpers shared by the handlers: lenient JSON body extractors whose errors use the
//! v1 envelope, time formatting as the clinic's page expects it, size rounding.
//!
//! Must not hold any policy (who may do what, what a job means).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use chrono::{DateTime, Timelike, Utc};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest JSON body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

async fn body_bytes(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large (1 MiB at most)",
            )
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {e}"))
        } else {
            ApiError::invalid(format!("the body does not have the expected fields: {e}"))
        }
    })
}

/// A required JSON body (any content type; errors in the v1 envelope).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("a JSON body is required"));
        }
        Ok(JsonBody(parse(&bytes)?))
    }
}

/// An optional JSON body: empty means `T::default()`.
pub struct OptJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptJson(T::default()));
        }
        Ok(OptJson(parse(&bytes)?))
    }
}

/// Python's `datetime.isoformat()` of an aware UTC time: microseconds only when non-zero,
/// `+00:00` suffix (what the clinic's page was served).
pub fn py_iso(t: DateTime<Utc>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// [`py_iso`] of an optional time, `null` when absent.
pub fn py_iso_opt(t: Option<DateTime<Utc>>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| py_iso(t).into())
}

/// Rounds to `places` decimals.
pub fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Seconds as f64 between two times (0 when negative).
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let micros = (to - from).num_microseconds().unwrap_or(i64::MAX).max(0);
    #[allow(clippy::cast_precision_loss)]
    let s = micros as f64 / 1e6;
    s
}

/// u64 as f64 (precision loss only above 2^53).
#[allow(clippy::cast_precision_loss)]
pub fn f(v: u64) -> f64 {
    v as f64
}

/// Parses an RFC 3339 time, with a message naming the parameter.
pub fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid(format!(
                "`{name}` must be an RFC 3339 time such as 2026-03-01T02:00:00Z"
            ))
        })
}

/// PostgreSQL's `pg_size_pretty`: "11 MB", "8192 bytes".
pub fn pretty_size(bytes: u64) -> String {
    let limit = 10 * 1024;
    let mut size = bytes;
    if size < limit {
        return format!("{size} bytes");
    }
    for unit in ["kB", "MB", "GB", "TB"] {
        let half = (size + 512) / 1024;
        if size / 1024 < limit || unit == "TB" {
            return format!("{half} {unit}");
        }
        size /= 1024;
    }
    format!("{size} PB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn iso_like_python() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 5, 20, 43).single();
        let Some(t) = t else { return };
        assert_eq!(py_iso(t), "2026-11-22T05:20:43+00:00");
        let t2 = t + chrono::Duration::microseconds(727_209);
        assert_eq!(py_iso(t2), "2026-11-22T05:20:43.727209+00:00");
        assert_eq!(pretty_size(8192), "8192 bytes");
        assert_eq!(pretty_size(11_156_839), "11 MB");
    }
}
