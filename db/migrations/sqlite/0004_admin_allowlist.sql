-- The allow-list layer organisation admins edit (the policy files stay the network admins'),
-- merged with the files' entries by every gateway. A save replaces an organisation's whole list
-- and bumps its version, only if the version is still the one the editor read, so a save based
-- on an outdated view is refused instead of overwriting someone else's. Times are unix seconds.
CREATE TABLE admin_allowlist_versions (
    org TEXT PRIMARY KEY,
    version BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0,
    updated_by TEXT NOT NULL DEFAULT ''
);

CREATE TABLE admin_allowlist_entries (
    org TEXT NOT NULL,
    network TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    added_by TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (org, network)
);
