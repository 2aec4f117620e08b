-- Organisation admins' API tokens. Only the SHA-256 of a token is kept (hex, unique, so a
-- presented token is found by it); the token itself is shown once. Names are unique in an
-- organisation, revoked tokens included, so `token:<name>` in the audit log names one token.
-- Scopes and source networks are comma-separated; times are unix seconds.
CREATE TABLE api_tokens (
    org TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    sources TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used BIGINT,
    PRIMARY KEY (org, id),
    UNIQUE (org, name)
);
