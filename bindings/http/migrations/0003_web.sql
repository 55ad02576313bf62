-- The web dashboard's sign-in sessions: one row per signed-in browser. The session is only
-- as good as its token: every request joins the token and refuses a revoked one.

CREATE TABLE web_sessions (
    -- SHA-256 of the cookie's secret; the secret itself is never stored.
    hash bytea PRIMARY KEY,
    token_id text NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    -- The session's CSRF token, which every form carries.
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
