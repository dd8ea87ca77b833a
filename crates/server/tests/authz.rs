//! The authorization matrix, built from the router's own route table: every route × {admin,
//! staff, viewer, no credentials} answers what the permission table says (401 without
//! credentials, 403 for an insufficient role, never a 5xx), and no route can be added to the
//! router without a declared permission. Also: the OpenAPI document describes exactly the v1
//! routes, and docs/permissions.md shows the table the code enforces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use common::*;
use strongroom_catalog::Role;
use strongroom_server::{Family, Forbidden, Permission, route_table};
use tower::ServiceExt;

/// How a request of the matrix authenticates.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    /// `Authorization: Bearer …` (API v1 clients).
    Bearer(&'a str),
    /// `Authorization: Token …` (the clinic's page).
    Token(&'a str),
    /// A session cookie, with or without the session's CSRF token.
    Session(&'a str, Option<&'a str>),
}

async fn head(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    send(app, method, path, token.map_or(Cred::None, Cred::Bearer)).await
}

async fn send(app: &TestApp, method: &Method, path: &str, cred: Cred<'_>) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder().method(method.clone()).uri(path);
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
        Cred::Token(t) => b = b.header("authorization", format!("Token {t}")),
        Cred::Session(secret, csrf) => {
            b = b.header(
                "cookie",
                format!("{}={secret}", strongroom_server::SECURE_COOKIE),
            );
            if let Some(c) = csrf {
                b = b.header("x-csrf-token", c);
            }
        }
    }
    let body = if *method == Method::GET || *method == Method::DELETE {
        Body::empty()
    } else {
        Body::from("{}")
    };
    let mut req = b
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "192.0.2.1:1234".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let resp = app.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let is_stream = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    let body = if is_stream {
        Vec::new()
    } else {
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    };
    (status, body)
}

#[tokio::test]
async fn every_route_answers_as_the_permission_table_says() {
    let app = app().await;
    let table = route_table(&app.state);
    assert!(
        table.len() > 50,
        "the table lists every route ({} found)",
        table.len()
    );
    let mut checked = 0;
    for route in &table {
        let path = route.path.replace("{id}", "999999");
        let (status, body) = head(&app, &route.method, &path, None).await;
        if route.permission == Permission::Public {
            assert!(
                status != StatusCode::UNAUTHORIZED
                    && status != StatusCode::FORBIDDEN
                    && !status.is_server_error(),
                "{} {path}: public route answered {status}",
                route.method
            );
            // It is routed (not the fallback's 404 or a 405).
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{} {path}: {status}",
                route.method
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {path} without credentials",
                route.method
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON 401");
            match route.family {
                Family::Compat(_) => assert_eq!(
                    v,
                    serde_json::json!({"detail": "Authentication credentials were not provided."})
                ),
                _ => assert_eq!(v["error"]["code"], "unauthenticated"),
            }
        }
        for (role, token) in [
            (Role::Admin, &app.admin),
            (Role::Staff, &app.staff),
            (Role::Viewer, &app.viewer),
        ] {
            let (status, body) = head(&app, &route.method, &path, Some(token)).await;
            expect(route, &path, role, "a bearer token", status, &body);
            // The clinic's page sends `Authorization: Token …`: the same rules.
            if matches!(route.family, Family::Compat(_)) {
                let (status, body) = send(&app, &route.method, &path, Cred::Token(token)).await;
                expect(route, &path, role, "a Token header", status, &body);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, table.len() * 3);
    // One entry per (method, path): the table is what the router serves.
    let unique: std::collections::BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(unique.len(), table.len(), "a route is registered twice");
}

/// Allowed: neither 401 nor 403 (nor a 5xx). Forbidden: 403 with the family's body.
fn expect(
    route: &strongroom_server::RouteInfo,
    path: &str,
    role: Role,
    how: &str,
    status: StatusCode,
    body: &[u8],
) {
    assert!(
        !status.is_server_error(),
        "{} {path} as {role} with {how}: {status} {}",
        route.method,
        String::from_utf8_lossy(body)
    );
    if route.permission.role_allows(role) {
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{} {path} as {role} with {how} must be allowed, got {status} {}",
            route.method,
            String::from_utf8_lossy(body)
        );
    } else {
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} {path} as {role} with {how} must be forbidden",
            route.method
        );
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON 403");
        match route.family {
            Family::Compat(Forbidden::Error(m)) => assert_eq!(v, serde_json::json!({"error": m})),
            Family::Compat(Forbidden::Detail(m)) => assert_eq!(v, serde_json::json!({"detail": m})),
            _ => assert_eq!(v["error"]["code"], "forbidden"),
        }
    }
}

/// A session of `user` written straight into the catalog: (cookie secret, CSRF token).
async fn session_for(app: &TestApp, user: &str) -> (String, String) {
    let u = app
        .catalog
        .users()
        .find_by_username(user)
        .await
        .unwrap()
        .unwrap();
    let (secret, _) = strongroom_server::generate_api_token().unwrap();
    let (csrf, _) = strongroom_server::generate_api_token().unwrap();
    app.catalog
        .sessions()
        .create(
            &strongroom_catalog::NewSession {
                id: strongroom_server::token_hash(&secret),
                user_id: u.id,
                expires_at: t0() + chrono::Duration::hours(1),
                csrf_token: csrf.clone(),
            },
            t0(),
        )
        .await
        .unwrap();
    (secret, csrf)
}

/// The same matrix with session cookies: reads need nothing more; every state-changing route
/// needs the session's CSRF token (403 without it, after the role check), and with it answers
/// as the table says.
#[tokio::test]
async fn sessions_follow_the_table_and_every_change_needs_the_csrf_token() {
    let app = app().await;
    let table = route_table(&app.state);
    let mut changes = 0;
    for route in table.iter().filter(|r| r.permission != Permission::Public) {
        let path = route.path.replace("{id}", "999999");
        let reads = route.method == Method::GET;
        for (role, user) in [
            (Role::Admin, "admin"),
            (Role::Staff, "staff"),
            (Role::Viewer, "viewer"),
        ] {
            // A fresh session each time: logging out or changing a password ends it.
            let (secret, csrf) = session_for(&app, user).await;
            if reads {
                let (status, body) =
                    send(&app, &route.method, &path, Cred::Session(&secret, None)).await;
                expect(route, &path, role, "a session", status, &body);
                continue;
            }
            changes += 1;
            let (status, body) =
                send(&app, &route.method, &path, Cred::Session(&secret, None)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {path} as {role} by session without CSRF token",
                route.method
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON 403");
            if route.permission.role_allows(role) {
                match route.family {
                    Family::Compat(_) => assert_eq!(
                        v,
                        serde_json::json!({"detail": "CSRF Failed: CSRF token missing or incorrect."})
                    ),
                    _ => assert_eq!(v["error"]["code"], "csrf", "{} {path}", route.method),
                }
                let (status, _) = send(
                    &app,
                    &route.method,
                    &path,
                    Cred::Session(&secret, Some("wrong-token")),
                )
                .await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} {path} with a wrong CSRF token",
                    route.method
                );
            }
            let (status, body) = send(
                &app,
                &route.method,
                &path,
                Cred::Session(&secret, Some(&csrf)),
            )
            .await;
            expect(
                route,
                &path,
                role,
                "a session and its CSRF token",
                status,
                &body,
            );
        }
    }
    assert!(
        changes > 60,
        "{changes} state-changing (route, role) pairs checked"
    );
}

#[tokio::test]
async fn invalid_tokens_are_401_in_each_envelope() {
    let app = app().await;
    let r = app
        .send(Req::get("/api/utils/backup/health/").token("sr_not-a-real-token"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json(), serde_json::json!({"detail": "Invalid token."}));
    let r = app
        .send(Req::get("/api/v1/backups").bearer("sr_nope"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    assert!(r.headers.contains_key("www-authenticate"));
    // An unknown scheme, or a scheme without a value, is not "no credentials".
    for h in ["Basic YWRtaW46YWRtaW4=", "Token", "Bearer "] {
        let r = app
            .send(Req::get("/api/utils/backup/health/").header("authorization", h))
            .await;
        assert_eq!(
            (r.status, r.json()),
            (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"detail": "Invalid token."})
            ),
            "{h}"
        );
    }
    // A revoked token, and the token of a disabled user, stop working at once.
    let viewer = app
        .catalog
        .users()
        .find_by_username("viewer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.send(Req::get("/api/utils/backup/health/").token(&app.viewer))
            .await
            .status,
        StatusCode::OK
    );
    app.catalog
        .users()
        .set_disabled(viewer.id, true)
        .await
        .unwrap();
    let r = app
        .send(Req::get("/api/utils/backup/health/").token(&app.viewer))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"detail": "Invalid token."})
        )
    );
    let staff = app
        .catalog
        .users()
        .find_by_username("staff")
        .await
        .unwrap()
        .unwrap();
    let tok = app
        .catalog
        .tokens()
        .list_for_user(staff.id)
        .await
        .unwrap()
        .remove(0);
    app.catalog.tokens().revoke(tok.id).await.unwrap();
    assert_eq!(
        app.send(Req::get("/api/v1/backups").bearer(&app.staff))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn no_route_is_added_outside_the_registry() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut offenders = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().is_some_and(|n| n == "routes.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for pat in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".merge(",
                "routing::get(",
                "routing::post(",
            ] {
                if text.contains(pat) {
                    offenders.push(format!("{} uses {pat}", p.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes must be registered through routes::Registry with a permission: {offenders:?}"
    );
}

#[tokio::test]
async fn openapi_describes_exactly_the_v1_routes() {
    let app = app().await;
    let table = route_table(&app.state);
    let r = app.send(Req::get("/api/v1/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut described = std::collections::BTreeSet::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            described.insert((method.to_uppercase(), path.clone()));
            assert!(op["x-permission"].is_string());
        }
    }
    let routed: std::collections::BTreeSet<(String, String)> = table
        .iter()
        .filter(|r| matches!(r.family, Family::V1 | Family::Metrics))
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(
        described, routed,
        "the OpenAPI paths and the router's v1 paths differ"
    );
    for r in &table {
        if r.path.starts_with("/api/v1") {
            assert_eq!(r.family, Family::V1);
            let op = &paths[&r.path][r.method.as_str().to_lowercase()];
            assert_eq!(
                op["x-permission"],
                r.permission.name(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}

#[test]
fn docs_show_the_enforced_permission_table() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/permissions.md"),
    )
    .unwrap();
    let table = strongroom_server::permission_table_markdown();
    assert!(
        doc.contains(table.trim()),
        "docs/permissions.md must contain this table:\n{table}"
    );
}

#[tokio::test]
async fn scoped_tokens_are_limited_to_their_scopes_and_metrics_tokens_read_metrics() {
    let app = app().await;
    let (token, hash) = strongroom_server::generate_api_token().unwrap();
    let viewer = app
        .catalog
        .users()
        .find_by_username("viewer")
        .await
        .unwrap()
        .unwrap();
    app.catalog
        .tokens()
        .create(
            &strongroom_catalog::NewToken {
                user_id: viewer.id,
                name: "prometheus".into(),
                token_hash: hash,
                scopes: vec!["metrics:read".into()],
                expires_at: None,
            },
            t0(),
        )
        .await
        .unwrap();
    let r = app.send(Req::get("/metrics").bearer(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("# TYPE strongroom_jobs gauge"));
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    // The scope does not extend to anything else.
    let r = app.send(Req::get("/api/v1/backups").bearer(&token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A viewer's own unscoped token does not read metrics.
    let r = app.send(Req::get("/metrics").bearer(&app.viewer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // An expired token is refused.
    let (t2, h2) = strongroom_server::generate_api_token().unwrap();
    app.catalog
        .tokens()
        .create(
            &strongroom_catalog::NewToken {
                user_id: viewer.id,
                name: "old".into(),
                token_hash: h2,
                scopes: vec![],
                expires_at: Some(t0() + chrono::Duration::hours(1)),
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        app.send(Req::get("/api/v1/backups").bearer(&t2))
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::hours(2));
    assert_eq!(
        app.send(Req::get("/api/v1/backups").bearer(&t2))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
