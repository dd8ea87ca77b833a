//! The web dashboard: one page (`/`) and its script, style and icon, compiled into the binary.
//! The page is plain JavaScript over the JSON API (`/api/v1`), signed in with the session
//! cookie; it holds no data itself, so its routes are public and everything it shows comes
//! through the API's permission checks.
//!
//! Must not loosen the content security policy beyond what the page needs: scripts, styles
//! and connections from this origin only, no inline code, no frames.

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Permission;
use crate::routes::{Family, Registry};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const ICON_SVG: &str = include_str!("icon.svg");

/// The page's policy: its own script, style and API; nothing inline, nothing framed.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

pub(crate) fn register(r: &mut Registry) {
    r.add(
        Method::GET,
        "/",
        Permission::Public,
        Family::Page,
        None,
        index,
    );
    r.add(
        Method::GET,
        "/ui/app.js",
        Permission::Public,
        Family::Page,
        None,
        script,
    );
    r.add(
        Method::GET,
        "/ui/app.css",
        Permission::Public,
        Family::Page,
        None,
        style,
    );
    r.add(
        Method::GET,
        "/ui/icon.svg",
        Permission::Public,
        Family::Page,
        None,
        icon,
    );
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
        // No inline script or style: the policy would block them.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains("<style") && !INDEX_HTML.contains(" style="));
        for handler in ["onclick=", "onload=", "onsubmit=", "javascript:"] {
            assert!(!INDEX_HTML.contains(handler), "inline {handler}");
        }
        assert!(PAGE_CSP.contains("script-src 'self'") && !PAGE_CSP.contains("unsafe"));
    }

    #[test]
    fn the_script_never_writes_html() {
        for risky in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(risky), "app.js uses {risky}");
        }
    }
}
