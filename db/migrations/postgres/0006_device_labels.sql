-- What a device is, in words its owner recognises: the browser and system named by its
-- User-Agent when the credential was issued ("Chrome", "Android"), from a fixed list, so no
-- text a client sent is stored. Empty for credentials issued before, and for certificates
-- made by the device flow.
ALTER TABLE devices ADD COLUMN browser TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN system TEXT NOT NULL DEFAULT '';
