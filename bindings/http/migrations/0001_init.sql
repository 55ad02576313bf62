-- phony-server's metadata: plans, projects, API tokens, jobs, idempotent answers.

CREATE TABLE plans (
    name text PRIMARY KEY,
    -- Lower ranks come first; a `plan_required` error names the lowest plan with a feature.
    rank integer NOT NULL UNIQUE,
    -- NULL: unlimited. Safety snapshots do not count; pinned ones do.
    snapshots_kept integer,
    -- NULL: the project's own retention (`retention_days`; NULL there: kept until deleted).
    retention_days integer,
    -- Whether retention expires pinned snapshots too.
    retention_expires_pinned boolean NOT NULL,
    -- none | after | before_and_after | configurable
    auto_snapshot_on_sync text NOT NULL,
    scheduled_snapshots boolean NOT NULL,
    snapshot_diff boolean NOT NULL,
    export boolean NOT NULL
);

INSERT INTO plans VALUES
    ('FREE',     0, 3,    7,    true,  'none',             false, false, false),
    ('STARTER',  1, 10,   30,   true,  'after',            false, false, false),
    ('TEAM',     2, 50,   90,   true,  'before_and_after', true,  true,  false),
    ('BUSINESS', 3, NULL, NULL, false, 'configurable',     true,  true,  true);

CREATE TABLE projects (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    plan text NOT NULL REFERENCES plans (name),
    -- The URL without its password, as shown.
    database_display text NOT NULL,
    -- The URL with its password, encrypted (nonce || AES-256-GCM ciphertext).
    database_secret bytea NOT NULL,
    -- BUSINESS: the retention chosen (NULL: kept until deleted).
    retention_days integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id text PRIMARY KEY,
    -- NULL: an admin token.
    project_id text REFERENCES projects (id) ON DELETE CASCADE,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE jobs (
    seq bigserial UNIQUE,
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind text NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params jsonb NOT NULL,
    progress jsonb NOT NULL DEFAULT '{}',
    result jsonb,
    error jsonb,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- The server running it; its session holds an advisory lock on this number.
    server_id bigint,
    -- How many times it was claimed (never more than once).
    runs integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (server_id) WHERE status = 'running';
CREATE INDEX jobs_by_project ON jobs (project_id, seq);

-- Which project holds a snapshot (the stores stay the source of truth).
CREATE TABLE snapshot_index (
    snapshot_id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE
);

-- The first answer to a POST with an Idempotency-Key, kept 24 hours.
CREATE TABLE idempotency (
    token_hash bytea NOT NULL,
    key text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    -- NULL while the first request is being answered.
    status integer,
    body bytea,
    content_type text,
    location text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_hash, key)
);
