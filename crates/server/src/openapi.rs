//! The OpenAPI 3 document, built from the route table (the same table the router is built
//! from, so every v1 route is described and nothing else is), with hand-written schemas.
//!
//! Must not describe a route that is not in the table; schemas must match what the handlers
//! send (schemathesis checks answers against them).

use serde_json::{Map, Value, json};

use crate::auth::Permission;
use crate::routes::{Doc, Family, RouteInfo};

/// Schema constructors.
pub(crate) mod s {
    use serde_json::{Value, json};

    pub(crate) fn int() -> Value {
        json!({"type": "integer"})
    }
    pub(crate) fn num() -> Value {
        json!({"type": "number"})
    }
    pub(crate) fn string() -> Value {
        json!({"type": "string"})
    }
    pub(crate) fn boolean() -> Value {
        json!({"type": "boolean"})
    }
    pub(crate) fn time() -> Value {
        json!({"type": "string", "format": "date-time"})
    }
    pub(crate) fn enumeration(values: &[&str]) -> Value {
        json!({"type": "string", "enum": values})
    }
    pub(crate) fn nullable(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            if o.contains_key("$ref") {
                return json!({"allOf": [v], "nullable": true});
            }
            o.insert("nullable".into(), Value::Bool(true));
        }
        v
    }
    pub(crate) fn arr(items: Value) -> Value {
        json!({"type": "array", "items": items})
    }
    pub(crate) fn any_obj() -> Value {
        json!({"type": "object"})
    }
    pub(crate) fn sref(name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
    pub(crate) fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
        let mut p = serde_json::Map::new();
        for (k, v) in props {
            p.insert((*k).to_owned(), v.clone());
        }
        let mut o = json!({"type": "object", "properties": p});
        if !required.is_empty()
            && let Some(m) = o.as_object_mut()
        {
            m.insert("required".into(), json!(required));
        }
        o
    }
    /// An object whose every listed property is required.
    pub(crate) fn all(props: &[(&str, Value)]) -> Value {
        let names: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        obj(props, &names)
    }
    /// One server-sent event of a `text/event-stream` response. Before OpenAPI 3.2 the
    /// `schema` of an event stream describes each event (tools such as schemathesis read it
    /// so), as an object of the event's fields; `data` is the JSON text of the event.
    pub(crate) fn sse_event(names: &[&str]) -> Value {
        obj(
            &[
                ("event", enumeration(names)),
                ("data", string()),
                ("id", string()),
                ("retry", int()),
            ],
            &["event", "data"],
        )
    }
    /// Integer with bounds.
    pub(crate) fn int_range(min: i64, max: i64) -> Value {
        json!({"type": "integer", "minimum": min, "maximum": max})
    }
}

use s::*;

const KINDS: &[&str] = &[
    "full",
    "database",
    "media",
    "verification",
    "test_restore",
    "restore",
    "prune",
    "import",
    "forget",
];
const STATUSES: &[&str] = &[
    "queued",
    "in_progress",
    "success",
    "warning",
    "failed",
    "cancelled",
];

fn components() -> Value {
    let job = all(&[
        ("id", int()),
        ("kind", enumeration(KINDS)),
        ("status", enumeration(STATUSES)),
        ("source", string()),
        ("started_by", string()),
        ("schedule_id", nullable(int())),
        ("created_at", time()),
        ("started_at", nullable(time())),
        ("completed_at", nullable(time())),
        ("duration_seconds", nullable(num())),
        ("bytes_read", nullable(int())),
        ("bytes_added", nullable(int())),
        ("bytes_stored", nullable(int())),
        ("files", nullable(int())),
        ("snapshot_ids", arr(string())),
        ("checksum", nullable(string())),
        ("error_message", nullable(string())),
        ("progress", nullable(sref("Progress"))),
        ("heartbeat_at", nullable(time())),
        ("lease_owner", nullable(string())),
        ("attempts", int()),
        ("time_limit_seconds", nullable(int())),
        ("cancel_requested", boolean()),
        ("metadata", any_obj()),
    ]);
    let progress = obj(
        &[
            ("phase", string()),
            ("bytes_done", int()),
            ("bytes_total", nullable(int())),
            ("eta_seconds", nullable(int())),
        ],
        &["phase", "bytes_done"],
    );
    let schedule = all(&[
        ("id", int()),
        ("name", string()),
        ("kind", enumeration(KINDS)),
        ("sources", arr(string())),
        ("when", string()),
        ("spec", string()),
        ("timezone", string()),
        ("enabled", boolean()),
        ("retention", any_obj()),
        ("verify_after", boolean()),
        ("test_restore", boolean()),
        ("last_run_at", nullable(time())),
        ("last_job_id", nullable(int())),
        ("last_outcome", nullable(enumeration(STATUSES))),
        ("next_run_at", nullable(time())),
        ("created_at", time()),
        ("updated_at", time()),
    ]);
    let user = all(&[
        ("id", int()),
        ("username", string()),
        ("role", enumeration(&["admin", "staff", "viewer"])),
        ("disabled", boolean()),
        ("created_at", time()),
        ("password_changed_at", nullable(time())),
    ]);
    let token = all(&[
        ("id", int()),
        ("user_id", int()),
        ("name", string()),
        ("scopes", arr(string())),
        ("created_at", time()),
        ("expires_at", nullable(time())),
        ("last_used_at", nullable(time())),
        ("revoked", boolean()),
    ]);
    let audit = all(&[
        ("id", int()),
        ("at", time()),
        ("actor", string()),
        ("action", string()),
        ("target", nullable(string())),
        ("details", any_obj()),
        ("ip", nullable(string())),
    ]);
    let error = all(&[("error", all(&[("code", string()), ("message", string())]))]);
    let recommendation = all(&[
        ("type", string()),
        ("priority", enumeration(&["high", "medium", "low"])),
        ("message", string()),
        ("action", string()),
    ]);
    let settings = all(&[
        ("alert_emails", arr(string())),
        ("stuck_after_minutes", int()),
    ]);
    let accepted = all(&[("job_id", int()), ("job", sref("Job"))]);
    json!({
        "Job": job, "Progress": progress, "Schedule": schedule, "User": user, "Token": token,
        "AuditEntry": audit, "Error": error, "Recommendation": recommendation,
        "Settings": settings, "Accepted": accepted,
    })
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": {"type": "integer", "format": "int64"}})
        })
        .collect()
}

fn operation(route: &RouteInfo, doc: &Doc) -> Value {
    let mut params = path_params(&route.path);
    for (name, schema, description) in &doc.query {
        params.push(json!({"name": name, "in": "query", "required": false,
                           "schema": schema, "description": description}));
    }
    let mut responses = Map::new();
    for (status, ctype, schema) in &doc.ok {
        responses.insert(
            status.to_string(),
            json!({"description": "success", "content": {*ctype: {"schema": schema}}}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"description": "an error", "content": {"application/json": {"schema": sref("Error")}}}),
    );
    let method = route.method.as_str().to_lowercase();
    let op_id = format!(
        "{method}{}",
        route
            .path
            .split(['/', '{', '}', '-', '.'])
            .filter(|p| !p.is_empty() && *p != "api" && *p != "v1")
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<String>()
    );
    let mut op = json!({
        "operationId": op_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "parameters": params,
        "responses": responses,
        "x-permission": route.permission.name(),
    });
    if route.permission == Permission::Public {
        op["security"] = json!([]);
    }
    if let Some(body) = &doc.body {
        op["requestBody"] = json!({
            "required": doc.body_required,
            "content": {"application/json": {"schema": body}},
        });
    }
    op
}

/// The document for these routes (those with a doc: v1 and metrics).
pub(crate) fn document(table: &[RouteInfo]) -> Value {
    let mut paths = Map::new();
    for route in table {
        let Some(doc) = &route.doc else { continue };
        if route.family == Family::V1 || route.family == Family::Metrics {
            let entry = paths
                .entry(route.path.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = entry.as_object_mut() {
                o.insert(route.method.as_str().to_lowercase(), operation(route, doc));
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Strongroom API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Strongroom's JSON API. Every route names the permission it needs in `x-permission` (see docs/permissions.md). Errors are `{\"error\": {\"code\", \"message\"}}`.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token; `Authorization: Token <key>` is accepted too."},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::session::SECURE_COOKIE, "description": "A session from POST /api/v1/auth/login; state changes also need the X-CSRF-Token header."},
            },
            "schemas": components(),
        },
        "paths": paths,
    })
}

/// The doc of the document's own route.
pub(crate) fn own_doc() -> Doc {
    Doc::new("meta", "This OpenAPI document").ok(200, any_obj())
}
