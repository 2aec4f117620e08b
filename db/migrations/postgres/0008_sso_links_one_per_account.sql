-- One subject per provider and account: a second person cannot be linked to an account.
-- 0003 as released indexed sso_links by account only; a database made then may hold several
-- subjects of one provider linked to one account. The earliest link of an account at a provider
-- stays (the lowest subject when two were made in the same second) and the later ones are
-- deleted: a later link is the one a second person could have added, and a subject whose link
-- is gone is refused by the next sign-in rather than given the account (SSO never links a second
-- subject to an account already linked at that provider). Databases made since carry 0003's
-- edited form, whose unique index of the same name is replaced by this one.
DELETE FROM sso_links
WHERE EXISTS (
    SELECT 1 FROM sso_links AS earlier
    WHERE earlier.org = sso_links.org
      AND earlier.issuer = sso_links.issuer
      AND earlier.account_id = sso_links.account_id
      AND (earlier.created_at < sso_links.created_at
           OR (earlier.created_at = sso_links.created_at AND earlier.subject < sso_links.subject))
);
DROP INDEX IF EXISTS sso_links_account;
CREATE UNIQUE INDEX sso_links_one_per_account ON sso_links (org, issuer, account_id);
