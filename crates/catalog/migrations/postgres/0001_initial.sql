-- Strongroom catalog, PostgreSQL, migration 1: every table.
-- Keep this file in step with migrations/sqlite/0001_initial.sql.

CREATE TABLE schedules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    sources JSONB NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL,
    timezone TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    retention JSONB NOT NULL DEFAULT '{}',
    verify_after BOOLEAN NOT NULL DEFAULT FALSE,
    test_restore BOOLEAN NOT NULL DEFAULT FALSE,
    last_run_at TIMESTAMPTZ,
    last_job_id BIGINT,
    last_outcome TEXT,
    next_run_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'in_progress', 'success', 'warning', 'failed', 'cancelled')),
    source TEXT NOT NULL,
    started_by TEXT NOT NULL,
    schedule_id BIGINT REFERENCES schedules (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    duration_seconds DOUBLE PRECISION,
    bytes_read BIGINT,
    bytes_added BIGINT,
    bytes_stored BIGINT,
    files BIGINT,
    snapshot_ids JSONB NOT NULL DEFAULT '[]',
    checksum TEXT,
    error_message TEXT,
    progress JSONB,
    heartbeat_at TIMESTAMPTZ,
    lease_owner TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    time_limit_seconds BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    metadata JSONB NOT NULL DEFAULT '{}'
);

ALTER TABLE schedules ADD CONSTRAINT schedules_last_job_id_fkey
    FOREIGN KEY (last_job_id) REFERENCES jobs (id) ON DELETE SET NULL;

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
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    details JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX health_metrics_name_recorded ON health_metrics (name, recorded_at);
CREATE INDEX health_metrics_recorded ON health_metrics (recorded_at);

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'viewer')),
    created_at TIMESTAMPTZ NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    password_changed_at TIMESTAMPTZ
);

CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes JSONB NOT NULL DEFAULT '[]',
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    csrf_token TEXT NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details JSONB NOT NULL DEFAULT '{}',
    ip TEXT
);

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);

CREATE TABLE alerts_sent (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    details JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX alerts_sent_key_channel ON alerts_sent (key, channel, sent_at);

CREATE TABLE snapshots (
    snapshot_id TEXT PRIMARY KEY,
    time TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    tags JSONB NOT NULL DEFAULT '[]',
    size BIGINT,
    parent TEXT,
    summary JSONB NOT NULL DEFAULT '{}',
    meta JSONB NOT NULL DEFAULT '{}',
    verified_at TIMESTAMPTZ,
    test_restored_at TIMESTAMPTZ,
    verification JSONB
);

CREATE INDEX snapshots_time ON snapshots (time);
CREATE INDEX snapshots_source_kind_time ON snapshots (source, kind, time);
