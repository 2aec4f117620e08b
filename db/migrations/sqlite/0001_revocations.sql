-- Revocations are the durable record: written before they take effect, loaded at start.
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('serial', 'device', 'account')),
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    drop_after BIGINT NOT NULL,
    UNIQUE (org, kind, subject)
);
CREATE INDEX revocations_drop_after ON revocations (drop_after);
