//! `/api/v1/events`: server-sent events of job status and progress. Each stream polls the
//! catalog (every second by default) and sends a `job` event for every job whose status or
//! progress changed since the last poll (and, at the start, for every active job).
//!
//! Bounded: at most `max_event_streams` streams at once (503 beyond), each living at most
//! `event_stream_max_age` (clients reconnect), each poll reading at most 100 jobs. Must not
//! hold a catalog connection between polls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::extract::State;
use axum::http::Method;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strongroom_catalog::{Job, JobFilter};

use crate::auth::Permission;
use crate::error::{ApiError, ApiResult};
use crate::openapi::s::*;
use crate::routes::{Doc, Registry};
use crate::state::AppState;

pub(crate) fn register(r: &mut Registry) {
    r.v1(Method::GET, "/api/v1/events", Permission::Read,
        Doc::new("events", "Server-sent events: `job` events with a job's id, kind, source, status and progress when they change")
            .ok_as(200, "text/event-stream", sse_event(&["job"])), events);
}

type Seen = HashMap<i64, (String, String)>;

fn fingerprint(j: &Job) -> (String, String) {
    (
        j.status.to_string(),
        serde_json::to_string(&j.progress).unwrap_or_default(),
    )
}

fn event_of(state: &AppState, j: &Job) -> Event {
    let mut data = json!({
        "id": j.id, "kind": j.kind, "source": j.source, "status": j.status,
        "progress": j.progress, "error_message": j.error_message,
        "started_at": j.started_at, "completed_at": j.completed_at,
    });
    state.inner.redactor.redact_json(&mut data);
    Event::default().event("job").data(data.to_string())
}

struct StreamState {
    state: AppState,
    seen: Option<Seen>,
    queue: Vec<Event>,
    started: Instant,
    first: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

async fn poll(st: &mut StreamState) {
    let jobs = match st
        .state
        .catalog()
        .jobs()
        .list(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
    {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %st.state.redact(&e.to_string()), "events: catalog poll failed");
            return;
        }
    };
    let mut next = Seen::new();
    for j in jobs.iter().rev() {
        let fp = fingerprint(j);
        let changed = match &st.seen {
            None => j.status.is_active(),
            Some(seen) => seen.get(&j.id) != Some(&fp),
        };
        if changed {
            st.queue.push(event_of(&st.state, j));
        }
        next.insert(j.id, fp);
    }
    st.seen = Some(next);
}

async fn events(State(state): State<AppState>) -> ApiResult<Response> {
    let permit = state
        .inner
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable("too many event streams are open; try again later")
                .with_retry_after(5)
        })?;
    let st = StreamState {
        state,
        seen: None,
        queue: Vec::new(),
        started: Instant::now(),
        first: true,
        _permit: permit,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = (!st.queue.is_empty()).then(|| st.queue.remove(0)) {
                return Some((Ok::<Event, Infallible>(ev), st));
            }
            let opts = st.state.options();
            if st.started.elapsed() >= opts.event_stream_max_age {
                return None;
            }
            if !st.first {
                tokio::time::sleep(opts.event_poll_interval).await;
            }
            st.first = false;
            poll(&mut st).await;
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
