-- Accounts, the credentials issued to their devices, and the audit log. Flags are 0/1 BIGINTs
-- and times unix seconds, so the same queries serve SQLite and PostgreSQL.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT,
    mobile TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'group')),
    roles TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    mfa_method TEXT CHECK (mfa_method IN ('authenticator', 'sms', 'email')),
    totp_secret TEXT,
    recovery_codes TEXT NOT NULL DEFAULT '',
    mfa_enrolled BIGINT NOT NULL DEFAULT 0,
    last_login BIGINT,
    disabled BIGINT NOT NULL DEFAULT 0,
    not_valid_before BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (org, username)
);
CREATE INDEX accounts_org_email ON accounts (org, email);

CREATE TABLE devices (
    org TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('browser', 'certificate')),
    trust TEXT NOT NULL CHECK (trust IN ('session', 'trusted', 'group')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen BIGINT,
    revoked_at BIGINT,
    ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (org, id)
);
CREATE INDEX devices_account ON devices (account_id);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    org TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_org_at ON audit_log (org, at);
