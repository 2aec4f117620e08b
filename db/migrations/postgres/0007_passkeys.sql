-- Passkeys (WebAuthn credentials): a second factor, several per account, and where the
-- organisation allows it the whole sign-in. `credential_id` is the authenticator's id for the
-- credential (base64url), unique over every organisation; `user_handle` the random id the
-- authenticator keeps for the account (the same for all of one account's passkeys);
-- `passkey` the public key and its settings as the WebAuthn library stores them (JSON);
-- `sign_count` the authenticator's signature counter, which only goes up: an assertion that
-- does not raise it comes from a copy of the key.
CREATE TABLE passkeys (
    org TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    user_handle TEXT NOT NULL,
    name TEXT NOT NULL,
    passkey TEXT NOT NULL,
    sign_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_used BIGINT,
    PRIMARY KEY (org, id)
);
CREATE INDEX passkeys_account ON passkeys (account_id);
