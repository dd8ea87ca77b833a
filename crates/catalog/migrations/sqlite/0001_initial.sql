-- Strongroom catalog, SQLite, migration 1: every table.
-- Times are UTC text of fixed width ('2026-01-31T02:00:00.000000Z'), so text order is time
-- order; JSON is text; booleans are 0/1. Tables are STRICT so a wrong type is an error, as it
-- is on PostgreSQL. Keep this file in step with migrations/postgres/0001_initial.sql.

CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    sources TEXT NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL,
    timezone TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    retention TEXT NOT NULL DEFAULT '{}',
    verify_after INTEGER NOT NULL DEFAULT 0,
    test_restore INTEGER NOT NULL DEFAULT 0,
    last_run_at TEXT,
    last_job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    last_outcome TEXT,
    next_run_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled = 1;

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'in_progress', 'success', 'warning', 'failed', 'cancelled')),
    source TEXT NOT NULL,
    started_by TEXT NOT NULL,
    schedule_id INTEGER REFERENCES schedules (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    duration_seconds REAL,
    bytes_read INTEGER,
    bytes_added INTEGER,
    bytes_stored INTEGER,
    files INTEGER,
    snapshot_ids TEXT NOT NULL DEFAULT '[]',
    checksum TEXT,
    error_message TEXT,
    progress TEXT,
    heartbeat_at TEXT,
    lease_owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    time_limit_seconds INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}'
) STRICT;

-- At most one active job per (source, kind), enforced by the database.
CREATE UNIQUE INDEX jobs_one_active_per_source_kind ON jobs (source, kind)
    WHERE status IN ('queued', 'in_progress');
CREATE INDEX jobs_queue ON jobs (created_at, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'in_progress';
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_kind_created ON jobs (kind, created_at);
CREATE INDEX jobs_source_kind_created ON jobs (source, kind, created_at);
CREATE INDEX jobs_schedule ON jobs (schedule_id);

CREATE TABLE health_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX health_metrics_name_recorded ON health_metrics (name, recorded_at);
CREATE INDEX health_metrics_recorded ON health_metrics (recorded_at);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'viewer')),
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    password_changed_at TEXT
) STRICT;

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    csrf_token TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    ip TEXT
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);

CREATE TABLE alerts_sent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX alerts_sent_key_channel ON alerts_sent (key, channel, sent_at);

CREATE TABLE snapshots (
    snapshot_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    size INTEGER,
    parent TEXT,
    summary TEXT NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}',
    verified_at TEXT,
    test_restored_at TEXT,
    verification TEXT
) STRICT;

CREATE INDEX snapshots_time ON snapshots (time);
CREATE INDEX snapshots_source_kind_time ON snapshots (source, kind, time);
