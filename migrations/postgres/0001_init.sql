-- gatewatch schema, PostgreSQL flavour. Times are nanoseconds since the Unix epoch (UTC):
-- event time for what the log said, wall time (`*_wall_ns`) for what gatewatch did.

-- One row per (detector, entity, episode); `id` is derived from those three, so every
-- gatewatch instance computes the same key for the same episode.
CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    detector        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    severity_rank   BIGINT NOT NULL,   -- low 1, medium 2, high 3, critical 4
    entity_kind     TEXT NOT NULL,
    entity          TEXT NOT NULL,
    -- For ip and subnet entities: the first and last address covered, as 32 hex digits of
    -- the IPv6 (or IPv4-mapped) address, so CIDR filters are index range scans.
    ip_lo           TEXT COLLATE "C",
    ip_hi           TEXT COLLATE "C",
    started_at_ns   BIGINT NOT NULL,
    detected_at_ns  BIGINT NOT NULL,
    last_seen_ns    BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    score_observed  DOUBLE PRECISION NOT NULL,
    score_expected  DOUBLE PRECISION NOT NULL,
    score_p_value   DOUBLE PRECISION,
    summary         TEXT NOT NULL,
    status          TEXT NOT NULL,      -- open | closed (the detector's view)
    triage          TEXT NOT NULL DEFAULT 'new',  -- new | acknowledged | resolved (the analyst's)
    triage_note     TEXT,
    triaged_at_wall_ns BIGINT,
    stored_at_wall_ns  BIGINT NOT NULL,
    updated_at_wall_ns BIGINT NOT NULL,
    UNIQUE (detector, entity, started_at_ns)
);
CREATE INDEX incidents_started ON incidents (started_at_ns);
CREATE INDEX incidents_last_seen ON incidents (last_seen_ns);
CREATE INDEX incidents_entity ON incidents (entity, started_at_ns);
CREATE INDEX incidents_ip ON incidents (ip_lo, started_at_ns);
-- Subnet incidents that start below an address range and reach into it.
CREATE INDEX incidents_kind_ip ON incidents (entity_kind, ip_lo);

-- A few sample lines per incident, length-capped by the engine.
CREATE TABLE incident_evidence (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    ts_ns       BIGINT NOT NULL,
    line        TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);

-- Per followed file: where processing got to (used by `run`'s tailer).
CREATE TABLE checkpoints (
    source        TEXT NOT NULL,        -- the configured source group
    fingerprint   TEXT NOT NULL,        -- hash of the file's first bytes; survives renames
    path          TEXT NOT NULL,        -- where the file was last seen
    byte_offset   BIGINT NOT NULL,     -- end of the last processed line
    updated_at_wall_ns BIGINT NOT NULL,
    PRIMARY KEY (source, fingerprint)
);

-- Alert deliveries, written in the incident's transaction and drained by the alerter.
CREATE TABLE alert_outbox (
    id            BIGSERIAL PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    channel       TEXT NOT NULL,        -- the configured alert name
    event         TEXT NOT NULL,        -- opened | escalated
    severity      TEXT NOT NULL,
    payload       TEXT NOT NULL,        -- the JSON body as it will be sent
    state         TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | dead
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_attempt_wall_ns BIGINT NOT NULL,
    last_error    TEXT,
    created_at_wall_ns BIGINT NOT NULL,
    sent_at_wall_ns    BIGINT,
    -- One delivery per channel per incident event and severity: a second instance's
    -- copy of the same alert is a no-op.
    UNIQUE (incident_id, channel, event, severity)
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt_wall_ns);

-- Learned per-key state, so a restart does not forget what is normal.
CREATE TABLE baselines (
    detector      TEXT NOT NULL,
    entity        TEXT NOT NULL,
    state         TEXT NOT NULL,        -- detector-specific JSON
    updated_at_ns BIGINT NOT NULL,     -- event time of the state
    PRIMARY KEY (detector, entity)
);
