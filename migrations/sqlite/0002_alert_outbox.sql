-- The alert outbox, as the alerter uses it. 0001's table was never written to by any
-- release, so it is replaced rather than altered.
DROP INDEX alert_outbox_due;
DROP TABLE alert_outbox;

-- One row per message to a channel. An incident event's rows are written in the incident's
-- transaction: 'pending' for channels that get every event, 'held' for channels that get
-- digests. The alerter turns a group's held rows into one 'pending' digest row (event
-- 'digest', no incident) and marks them 'digested' with its id.
CREATE TABLE alert_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel       TEXT NOT NULL,        -- the configured [[alerts]] name
    dedup_key     TEXT NOT NULL,        -- incident/event[/severity]; the webhook-id derives from it
    incident_id   TEXT,                 -- NULL for a digest
    event         TEXT NOT NULL,        -- opened | escalated | closed | digest | test
    severity      TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    payload       TEXT NOT NULL,        -- the incident contract plus "event", as JSON
    state         TEXT NOT NULL,        -- held | pending | sent | failed | dead | digested
    members       INTEGER NOT NULL DEFAULT 1,   -- incidents a digest carries
    digest_id     INTEGER,                -- for a digested row: the digest that carried it
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt_wall_ns INTEGER NOT NULL,  -- due time; while claimed, the end of the claim
    claimed_by    TEXT,
    last_status   INTEGER,                -- HTTP status of the last attempt
    last_error    TEXT,
    response      TEXT,                 -- the receiver's answer to the last attempt (cut)
    created_at_wall_ns INTEGER NOT NULL,
    sent_at_wall_ns    INTEGER,
    UNIQUE (channel, dedup_key)
);
CREATE INDEX alert_outbox_due ON alert_outbox (channel, state, next_attempt_wall_ns);
CREATE INDEX alert_outbox_incident ON alert_outbox (incident_id);

-- Per channel and group: when its last message went out (digest timing).
CREATE TABLE alert_groups (
    channel       TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    last_sent_wall_ns INTEGER NOT NULL,
    PRIMARY KEY (channel, group_key)
);
