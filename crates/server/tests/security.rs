//! Sessions, CSRF and login throttling (issue 5, "Done means" 5): the session cookie's name
//! and flags, CSRF on cookie-authenticated changes, idle and absolute expiry, logout and
//! password change ending sessions, and brute-force throttling per account and per address,
//! including a spoofed `X-Forwarded-For` (believed only from configured proxies); the
//! dashboard's content security policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::*;
use serde_json::{Value, json};
use strongroom_server::{PLAIN_COOKIE, SECURE_COOKIE};

fn login_req(user: &str, password: &str) -> Req {
    Req::post("/api/v1/auth/login").json(json!({"username": user, "password": password}))
}

/// Logs in; returns (cookie secret, CSRF token, the whole Set-Cookie value).
async fn login(app: &TestApp, user: &str) -> (String, String, String) {
    let r = app.send(login_req(user, PASSWORD)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let secret = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    (secret, csrf, set)
}

fn with_cookie(r: Req, secret: &str) -> Req {
    r.header("cookie", &format!("{SECURE_COOKIE}={secret}"))
}

async fn me(app: &TestApp, secret: &str) -> StatusCode {
    app.send(with_cookie(Req::get("/api/v1/auth/me"), secret))
        .await
        .status
}

#[tokio::test]
async fn login_sets_a_host_only_secure_http_only_strict_cookie() {
    let app = app().await;
    let (secret, csrf, set) = login(&app, "staff").await;
    // `__Host-`: Secure, Path=/, no Domain. HttpOnly and SameSite=Strict; it lives at most
    // as long as the absolute timeout.
    assert_eq!(
        set,
        format!(
            "{SECURE_COOKIE}={secret}; Path=/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict"
        )
    );
    assert!(!set.to_ascii_lowercase().contains("domain="));
    assert!(secret.len() >= 32 && !secret.contains("staff"));
    // Only the secret's hash is stored.
    assert!(app.catalog.sessions().get(&secret).await.unwrap().is_none());
    let stored = app
        .catalog
        .sessions()
        .get(&strongroom_server::token_hash(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.csrf_token, csrf);
    assert_eq!(stored.expires_at, t0() + Duration::minutes(30));
    let r = app
        .send(with_cookie(Req::get("/api/v1/auth/me"), &secret))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (
            v["user"]["username"].clone(),
            v["via"].clone(),
            v["csrf_token"].clone()
        ),
        (json!("staff"), json!("session"), json!(csrf))
    );
    assert!(v["user"].get("password_hash").is_none());
    // Security headers on every answer.
    for (k, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(r.headers[k], want, "{k}");
    }
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    // The same message for an unknown user and a wrong password.
    let a = app.send(login_req("nobody", PASSWORD)).await;
    let b = app.send(login_req("staff", "wrong password here")).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(a.json(), b.json());
    assert!(a.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn without_tls_the_cookie_is_not_secure_and_with_https_hsts_is_sent() {
    let app = app_with(Setup {
        options: Some(Box::new(|o| o.secure_cookies = false)),
        ..Setup::default()
    })
    .await;
    let (secret, _, set) = login(&app, "viewer").await;
    assert_eq!(
        set,
        format!("{PLAIN_COOKIE}={secret}; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict")
    );
    let r = app
        .send(Req::get("/api/v1/auth/me").header("cookie", &format!("{PLAIN_COOKIE}={secret}")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("strict-transport-security").is_none());
    let app = app_with(Setup {
        public_url: Some("https://backup.clinic.example".into()),
        ..Setup::default()
    })
    .await;
    let r = app.send(login_req("viewer", PASSWORD)).await;
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure;")
    );
    assert_eq!(
        r.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn cookie_changes_need_the_sessions_csrf_token() {
    let app = app().await;
    let (secret, csrf, _) = login(&app, "staff").await;
    let (_, other_csrf, _) = login(&app, "admin").await;
    let start = || {
        with_cookie(
            Req::post("/api/v1/backups").json(json!({"kind": "database"})),
            &secret,
        )
    };
    let r = app.send(start()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["code"], "csrf");
    // Another session's token does not do.
    let r = app.send(start().header("x-csrf-token", &other_csrf)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.send(start().header("x-csrf-token", &csrf)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // The compatibility API: DRF's words.
    let r = app
        .send(with_cookie(
            Req::post("/api/utils/backup/create/").json(json!({"backup_type": "media"})),
            &secret,
        ))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::FORBIDDEN,
            json!({"detail": "CSRF Failed: CSRF token missing or incorrect."})
        )
    );
    // Reads need no token.
    assert_eq!(
        app.send(with_cookie(Req::get("/api/utils/backup/list/"), &secret))
            .await
            .status,
        StatusCode::OK
    );
    // An API token is not an ambient credential: no CSRF token needed (and it wins over a
    // cookie sent along).
    let r = app
        .send(
            with_cookie(
                Req::post("/api/utils/backup/create/").json(json!({"backup_type": "media"})),
                &secret,
            )
            .token(&app.staff),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // Nothing was started by the refused requests.
    let jobs = app
        .catalog
        .jobs()
        .list(&strongroom_catalog::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
}

#[tokio::test]
async fn sessions_end_after_the_idle_timeout() {
    let app = app().await;
    let (secret, _, _) = login(&app, "viewer").await;
    app.clock.advance(Duration::minutes(29));
    assert_eq!(me(&app, &secret).await, StatusCode::OK);
    // Each request moves the idle deadline.
    app.clock.advance(Duration::minutes(29));
    assert_eq!(me(&app, &secret).await, StatusCode::OK);
    app.clock.advance(Duration::minutes(30));
    let r = app
        .send(with_cookie(Req::get("/api/v1/auth/me"), &secret))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    // And it is gone, not merely refused.
    assert!(
        app.catalog
            .sessions()
            .get(&strongroom_server::token_hash(&secret))
            .await
            .unwrap()
            .is_none()
    );
    app.clock.set(t0());
    assert_eq!(me(&app, &secret).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_end_after_the_absolute_timeout_however_busy() {
    let app = app().await;
    let (secret, _, _) = login(&app, "viewer").await;
    let mut elapsed = Duration::zero();
    while elapsed < Duration::hours(12) - Duration::minutes(20) {
        app.clock.advance(Duration::minutes(20));
        elapsed += Duration::minutes(20);
        assert_eq!(me(&app, &secret).await, StatusCode::OK, "after {elapsed}");
    }
    app.clock.set(t0() + Duration::hours(12));
    assert_eq!(me(&app, &secret).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = app().await;
    let (secret, csrf, _) = login(&app, "admin").await;
    let (other, _, _) = login(&app, "admin").await;
    // Logging out is a change: without the CSRF token it is refused (no forced logout).
    let r = app
        .send(with_cookie(Req::post("/api/v1/auth/logout"), &secret))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(me(&app, &secret).await, StatusCode::OK);
    let r = app
        .send(with_cookie(Req::post("/api/v1/auth/logout"), &secret).header("x-csrf-token", &csrf))
        .await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({"logged_out": true}))
    );
    assert_eq!(
        r.headers["set-cookie"],
        format!("{SECURE_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict").as_str()
    );
    assert_eq!(me(&app, &secret).await, StatusCode::UNAUTHORIZED);
    // Only that session.
    assert_eq!(me(&app, &other).await, StatusCode::OK);
    let audit = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("logout".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let app = app().await;
    let (a, csrf, _) = login(&app, "staff").await;
    let (b, _, _) = login(&app, "staff").await;
    let (admin, _, _) = login(&app, "admin").await;
    let change = |current: &str, new: &str| {
        with_cookie(Req::post("/api/v1/auth/password"), &a)
            .header("x-csrf-token", &csrf)
            .json(json!({"current_password": current, "new_password": new}))
    };
    let r = app
        .send(change("not my password", "a much longer new password"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(me(&app, &a).await, StatusCode::OK);
    let r = app.send(change(PASSWORD, "short")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(Duration::seconds(1));
    let r = app
        .send(change(PASSWORD, "a much longer new password"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(me(&app, &a).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &admin).await, StatusCode::OK);
    assert_eq!(
        app.send(login_req("staff", PASSWORD)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(login_req("staff", "a much longer new password"))
            .await
            .status,
        StatusCode::OK
    );
}

async fn attempt(
    app: &TestApp,
    user: &str,
    password: &str,
    peer: &str,
    xff: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut r = login_req(user, password).peer(peer);
    if let Some(x) = xff {
        r = r.header("x-forwarded-for", x);
    }
    let r = app.send(r).await;
    let retry = r
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status, r.json(), retry)
}

#[tokio::test]
async fn failed_logins_lock_the_account_with_growing_delays() {
    let app = app().await;
    let peer = "192.0.2.50:4000";
    for i in 0..6 {
        let (s, _, _) = attempt(&app, "admin", &format!("guess {i}"), peer, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Locked: even the right password is refused, with Retry-After.
    let (s, v, retry) = attempt(&app, "admin", PASSWORD, peer, None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["error"]["code"], "too_many_attempts");
    assert_eq!(retry.as_deref(), Some("1"));
    // From another address too: the account is what is locked.
    let (s, _, _) = attempt(&app, "admin", PASSWORD, "198.51.100.20:1", None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // The delay doubles with each further failure.
    app.clock.advance(Duration::seconds(2));
    attempt(&app, "admin", "guess 7", peer, None).await;
    let (s, _, retry) = attempt(&app, "admin", PASSWORD, peer, None).await;
    assert_eq!(
        (s, retry.as_deref()),
        (StatusCode::TOO_MANY_REQUESTS, Some("2"))
    );
    app.clock.advance(Duration::seconds(3));
    let (s, _, _) = attempt(&app, "admin", PASSWORD, peer, None).await;
    assert_eq!(s, StatusCode::OK);
    // Failures and the throttling are audited with the address.
    let audit = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("login.failure".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 7);
    assert!(audit.iter().all(|e| e.ip.as_deref() == Some("192.0.2.50")));
    let throttled = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("login.throttled".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(throttled.len(), 3);
}

/// Without trusted proxies, `X-Forwarded-For` is ignored: an attacker who sends a new
/// address with every guess (and a new user name, to stay clear of the account lock) is still
/// throttled on the address the connection comes from, and other clients are not affected.
#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_escape_the_address_throttle() {
    let app = app().await;
    let attacker = "203.0.113.66:5000";
    for i in 0..20 {
        let xff = format!("10.{}.{}.{}", i, i + 1, i + 2);
        let (s, _, _) = attempt(&app, &format!("user{i}"), "guess", attacker, Some(&xff)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    attempt(&app, "user20", "guess", attacker, Some("192.0.2.200")).await;
    let (s, _, _) = attempt(&app, "staff", PASSWORD, attacker, Some("198.51.100.1")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, _, _) = attempt(&app, "staff", PASSWORD, attacker, None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Another client, even one claiming to be the attacker's forwarded address, logs in.
    let (s, _, _) = attempt(
        &app,
        "staff",
        PASSWORD,
        "192.0.2.77:1",
        Some("203.0.113.66"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let audit = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("login.failure".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .all(|e| e.ip.as_deref() == Some("203.0.113.66")),
        "audited with the peer address"
    );
}

/// Behind a trusted proxy, the client is the right-most address of `X-Forwarded-For` that is
/// not a proxy: entries a client prepends do not change who it is.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = app_with(Setup {
        trusted_proxies: vec!["10.0.0.0/8".into()],
        ..Setup::default()
    })
    .await;
    let proxy = "10.1.2.3:40000";
    for i in 0..21 {
        // The client prepends a fresh fake address each time; the proxy appends the real one.
        let xff = format!("172.16.0.{i}, 198.51.100.7");
        attempt(&app, &format!("user{i}"), "guess", proxy, Some(&xff)).await;
    }
    let (s, _, _) = attempt(
        &app,
        "viewer",
        PASSWORD,
        proxy,
        Some("1.2.3.4, 198.51.100.7"),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is not locked out.
    let (s, _, _) = attempt(&app, "viewer", PASSWORD, proxy, Some("198.51.100.8")).await;
    assert_eq!(s, StatusCode::OK);
    // Through two trusted proxies the client is still found.
    let (s, _, _) = attempt(
        &app,
        "viewer",
        PASSWORD,
        proxy,
        Some("198.51.100.7, 10.9.9.9"),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let audit = app
        .catalog
        .audit()
        .list(&strongroom_catalog::AuditFilter {
            action: Some("login.failure".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .all(|e| e.ip.as_deref() == Some("198.51.100.7"))
    );
    // A peer that is not a proxy cannot claim an address.
    let (s, _, _) = attempt(
        &app,
        "viewer",
        PASSWORD,
        "192.0.2.9:1",
        Some("198.51.100.8"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn there_is_no_open_first_user_endpoint() {
    let app = app().await;
    let r = app
        .send(Req::post("/api/v1/users").json(
            json!({"username": "eve", "password": "a long enough password", "role": "admin"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.send(Req::new(Method::POST, "/api/v1/users").token(&app.staff).json(json!({"username": "eve", "password": "a long enough password", "role": "admin"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        app.catalog
            .users()
            .find_by_username("eve")
            .await
            .unwrap()
            .is_none()
    );
}

/// The dashboard's page and assets: public, each with its type; the page's policy allows its
/// own script, style and API and nothing inline; API answers keep the policy that allows
/// nothing.
#[tokio::test]
async fn the_dashboard_loads_only_its_own_code() {
    let app = app().await;
    let page = app.send(Req::get("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.text().contains("/ui/app.js"));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = app.send(Req::get(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(!r.body.is_empty(), "{path}");
    }
    let api = app.send(Req::get("/api/v1/health")).await;
    let api_csp = api.headers["content-security-policy"].to_str().unwrap();
    assert!(
        api_csp.starts_with("default-src 'none'") && !api_csp.contains("script-src"),
        "{api_csp}"
    );
    // An unknown asset is a 404, not the page.
    assert_eq!(
        app.send(Req::get("/ui/nothing.js")).await.status,
        StatusCode::NOT_FOUND
    );
}
