-- Sign-in tokens: people's sessions and the credentials of devices and nodes.
-- Only a SHA-256 of a token is stored; the token itself is shown once, when issued.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'device', 'node')),
    -- the username of a session, the id of a device or node
    subject     TEXT NOT NULL,
    user_id     INTEGER REFERENCES users(id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    -- unix seconds; NULL: valid until revoked
    expires_at  INTEGER,
    created_at  DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_tokens_subject ON tokens(kind, subject);

-- A VPN's private key / credentials, sealed with the data dir's key.
ALTER TABLE vpn_configs ADD COLUMN secret TEXT DEFAULT '';
