//! The route table: every route is registered here, through [`Registry::add`], with the
//! [`Permission`] it needs and its envelope family; the router, the authorization test and
//! the OpenAPI document are all built from this one table.
//!
//! What this module must not allow: a route added to the router any other way (a test scans
//! the sources for `.route(` outside this file), or a route without a permission.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodFilter;
use serde_json::Value;

use crate::auth::{Gate, Permission, authorize};
use crate::state::AppState;

/// The 403 body a compatibility route answers with (the clinic's gates differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// `{"error": "..."}`.
    Error(&'static str),
    /// `{"detail": "..."}`.
    Detail(&'static str),
}

/// Which API a route belongs to (decides the error envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/api/v1`.
    V1,
    /// The clinic's compatibility API.
    Compat(Forbidden),
    /// `/metrics`.
    Metrics,
    /// The dashboard's page and assets (not API: no OpenAPI entry).
    Page,
}

/// OpenAPI facts of a v1 route.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// Operation summary.
    pub summary: &'static str,
    /// Tag.
    pub tag: &'static str,
    /// Query parameters: name, schema, description.
    pub query: Vec<(&'static str, Value, &'static str)>,
    /// JSON request body schema, if any.
    pub body: Option<Value>,
    /// Whether the body is required.
    pub body_required: bool,
    /// Success responses: status, content type, schema.
    pub ok: Vec<(u16, &'static str, Value)>,
}

impl Doc {
    /// A doc with a tag and a summary.
    pub fn new(tag: &'static str, summary: &'static str) -> Self {
        Doc {
            summary,
            tag,
            ..Doc::default()
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: &'static str, schema: Value, description: &'static str) -> Self {
        self.query.push((name, schema, description));
        self
    }

    /// A required JSON body.
    pub fn body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self.body_required = true;
        self
    }

    /// An optional JSON body.
    pub fn optional_body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self.body_required = false;
        self
    }

    /// A JSON success response.
    pub fn ok(mut self, status: u16, schema: Value) -> Self {
        self.ok.push((status, "application/json", schema));
        self
    }

    /// A success response of another content type.
    pub fn ok_as(mut self, status: u16, content_type: &'static str, schema: Value) -> Self {
        self.ok.push((status, content_type, schema));
        self
    }
}

/// One registered route.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// Method.
    pub method: Method,
    /// Path, axum syntax (`{id}` for parameters, the same as OpenAPI's).
    pub path: String,
    /// What it needs.
    pub permission: Permission,
    /// Its family.
    pub family: Family,
    /// Its OpenAPI facts (v1 and metrics routes).
    pub doc: Option<Doc>,
}

/// Builds the router and the table together.
pub(crate) struct Registry {
    state: AppState,
    router: Router<AppState>,
    pub(crate) table: Vec<RouteInfo>,
}

fn filter(method: &Method) -> MethodFilter {
    match *method {
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    }
}

impl Registry {
    pub(crate) fn new(state: AppState) -> Self {
        Registry {
            state,
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// Registers `handler` for `method path`, behind the declared `permission`.
    pub(crate) fn add<H, T>(
        &mut self,
        method: Method,
        path: &str,
        permission: Permission,
        family: Family,
        doc: Option<Doc>,
        handler: H,
    ) where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let gate = Gate { permission, family };
        let mr = axum::routing::on(filter(&method), handler).route_layer(
            axum::middleware::from_fn_with_state((self.state.clone(), gate), authorize),
        );
        let router = std::mem::take(&mut self.router);
        self.router = router.route(path, mr);
        self.table.push(RouteInfo {
            method,
            path: path.to_owned(),
            permission,
            family,
            doc,
        });
    }

    /// Registers a v1 route.
    pub(crate) fn v1<H, T>(&mut self, method: Method, path: &str, perm: Permission, doc: Doc, h: H)
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(method, path, perm, Family::V1, Some(doc), h);
    }

    /// Registers a compatibility route under both `/api/utils/` and `/api/system/`.
    pub(crate) fn compat<H, T>(
        &mut self,
        method: Method,
        tail: &str,
        perm: Permission,
        forbidden: Forbidden,
        h: H,
    ) where
        H: Handler<T, AppState> + Clone,
        T: 'static,
    {
        for prefix in ["/api/utils/", "/api/system/"] {
            let path = format!("{prefix}{tail}");
            self.add(
                method.clone(),
                &path,
                perm,
                Family::Compat(forbidden),
                None,
                h.clone(),
            );
        }
    }

    pub(crate) fn into_parts(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.table)
    }
}
