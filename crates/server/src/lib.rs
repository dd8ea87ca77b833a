//! Strongroom's HTTP service: the web dashboard (`/`, a page over the API), the JSON API v1
//! (`/api/v1`, described by an OpenAPI document at `/api/v1/openapi.json`), the
//! compatibility API the clinic's React page calls (`/api/utils/…`, `/api/system/…`,
//! `/api/auth/database-health/`), Prometheus metrics
//! (`/metrics`) and server-sent events of job progress, with authentication (argon2id users,
//! `__Host-` session cookies with CSRF tokens, hashed API tokens), roles, login throttling and
//! an audit log.
//!
//! ```no_run
//! # async fn demo(catalog: strongroom_catalog::Catalog, config: strongroom_config::Config)
//! # -> std::io::Result<()> {
//! use strongroom_server::{AppState, serve};
//! let state = AppState::builder(catalog, config).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! What this crate must not do: run a backup, verification or restore inside a request (it
//! enqueues a durable job in the catalog and answers at once with its id; workers elsewhere
//! lease and run it); buffer a download whole; send a secret, a password hash, a token or an
//! internal error's text to a client or a log line; register a route without a permission.

mod api;
pub mod auth;
mod compat;
mod error;
mod events;
mod health;
mod metrics;
mod middleware;
mod openapi;
mod repo;
mod routes;
mod settings;
mod state;
mod ui;
mod util;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;

pub use auth::password::{
    HashError, PasswordCost, TOKEN_PREFIX, generate_api_token, hash_password, hash_password_with,
    token_hash, verify_password,
};
pub use auth::permissions::{Permission, markdown_table as permission_table_markdown};
pub use auth::session::{PLAIN_COOKIE, SECURE_COOKIE};
pub use auth::throttle::ThrottlePolicy;
pub use error::{ApiError, ErrorStyle};
pub use repo::{RepoAccess, RepoAccessError, RepositoryAccess, SnapshotInfo};
pub use routes::{Doc, Family, Forbidden, RouteInfo};
pub use settings::{RuntimeSettings, load_settings};
pub use state::{
    AppState, AppStateBuilder, Clock, DatabaseProbe, ManualClock, Redactor, ServerOptions,
    SystemClock,
};

fn build(state: AppState) -> (Router, Vec<RouteInfo>) {
    let mut reg = routes::Registry::new(state.clone());
    api::register(&mut reg);
    compat::register(&mut reg);
    metrics::register(&mut reg);
    ui::register(&mut reg);
    // The OpenAPI document describes the table, including its own route.
    let own = RouteInfo {
        method: Method::GET,
        path: "/api/v1/openapi.json".to_owned(),
        permission: Permission::Public,
        family: Family::V1,
        doc: Some(openapi::own_doc()),
    };
    let mut described = reg.table.clone();
    described.push(own.clone());
    let body = Arc::new(
        serde_json::to_vec(&openapi::document(&described)).unwrap_or_else(|_| b"{}".to_vec()),
    );
    let handler = move || {
        let body = Arc::clone(&body);
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body.as_ref().clone(),
            )
                .into_response()
        }
    };
    reg.add(
        own.method,
        &own.path,
        own.permission,
        own.family,
        own.doc,
        handler,
    );
    let (router, table) = reg.into_parts();
    let router = router
        .fallback(middleware::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::envelope,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .with_state(state);
    (router, table)
}

/// The whole HTTP service as a router (for `oneshot` tests and for [`serve`]).
pub fn app(state: AppState) -> Router {
    build(state).0
}

/// The route table the router of [`app`] is built from: every route with its declared
/// permission.
pub fn route_table(state: &AppState) -> Vec<RouteInfo> {
    build(state.clone()).1
}

/// The OpenAPI 3 document served at `/api/v1/openapi.json`.
pub fn openapi_document(state: &AppState) -> serde_json::Value {
    openapi::document(&route_table(state))
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight. Peer addresses reach the login throttle and the audit log.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
