-- Values generated once per database and shared by every instance writing to it: the token
-- fingerprint key when no key file is configured ('token_key', 64 hex digits).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
