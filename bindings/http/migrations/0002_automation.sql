-- Automation: syncs from a source database, schedules, sprint-end hooks, the project's own
-- retention policy.

-- The source a sync copies from: shown without its password, kept whole and sealed (as
-- database_secret); the masking rules applied on the way (validated when saved); the
-- project's policy of keeping the last N snapshots.
ALTER TABLE projects
    ADD COLUMN sync_source_display text,
    ADD COLUMN sync_source_secret bytea,
    ADD COLUMN masking_rules text,
    ADD COLUMN keep_last integer;

-- Cron schedules of snapshots. A due run is claimed by moving last_run and next_run with
-- `UPDATE … WHERE` under `FOR UPDATE SKIP LOCKED`, in the transaction that queues its job:
-- several servers fire each run exactly once.
CREATE TABLE schedules (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    cron text NOT NULL,
    timezone text NOT NULL,
    -- A name template (`weekly-{date}`).
    name text NOT NULL,
    pin boolean NOT NULL,
    -- The last run made (at first: when the schedule was made); a due run comes after it.
    last_run timestamptz NOT NULL,
    -- The next run; NULL: it never fires again.
    next_run timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_next ON schedules (next_run);
CREATE INDEX schedules_by_project ON schedules (project_id, created_at);

-- Issue-tracker webhooks per project: the signing secret, sealed.
CREATE TABLE integrations (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tracker text NOT NULL CHECK (tracker IN ('jira', 'linear')),
    secret bytea NOT NULL,
    -- A sprint end also starts a sync (after its snapshot).
    sync_on_sprint_end boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, tracker)
);

-- Sprint ends delivered, one row per sprint or cycle: a re-delivery takes no second snapshot.
CREATE TABLE hook_deliveries (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tracker text NOT NULL,
    event_id text NOT NULL,
    sprint text NOT NULL,
    job_id text,
    sync_job_id text,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (project_id, tracker, event_id)
);
