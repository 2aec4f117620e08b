-- Accounts linked to a single sign-on provider's subject: (issuer, subject) never changes,
-- unlike an e-mail address, so it is the only thing a later sign-in is matched on.
CREATE TABLE sso_links (
    org TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org, issuer, subject)
);
CREATE INDEX sso_links_account ON sso_links (account_id);
