-- API keys, quotas and usage (the paid-API layer). Same dialect rules as 0001.

-- A key is shown once; only its SHA-256 is kept. `id` is the key's public prefix.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    hash           TEXT NOT NULL,
    name           TEXT NOT NULL,
    plan           TEXT NOT NULL,
    admin          BIGINT NOT NULL,
    -- Signs this key's webhooks.
    webhook_secret TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    revoked_ms     BIGINT
);

-- Credits of one key in one quota period (a UTC day `2026-11-25` or month `2026-11`):
-- `used` by succeeded jobs, `reserved` by jobs still running. A job reserves a credit before
-- it starts (used + reserved < quota, in one upsert) and settles it when it ends.
CREATE TABLE quota_usage (
    key_id   TEXT NOT NULL,
    period   TEXT NOT NULL,
    used     BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    PRIMARY KEY (key_id, period)
);

-- Requests per key and UTC day.
CREATE TABLE usage_stats (
    day       TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    requests  BIGINT NOT NULL,
    successes BIGINT NOT NULL,
    failures  BIGINT NOT NULL,
    total_ms  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, key_id)
);

-- Who submitted a job, and which quota period holds its reserved credit (NULL: none).
ALTER TABLE jobs ADD COLUMN key_id TEXT;
ALTER TABLE jobs ADD COLUMN quota_period TEXT;
CREATE INDEX jobs_key ON jobs (key_id, status_rank);

-- Rate limits (GCRA): each bucket's theoretical arrival time, in microseconds since the Unix
-- epoch. Shared by every gateway on the database.
CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL
);

-- Idempotency-Key: the first answer to a key's request, replayed for 24 h.
CREATE TABLE idempotency (
    key_id       TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- 'in_flight' until the first answer is stored, then 'done'.
    state        TEXT NOT NULL,
    status       BIGINT,
    headers      TEXT,
    body         BYTEA,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);

-- Webhook deliveries: one row a job with a callback_url, from its end until delivered or
-- given up on.
CREATE TABLE webhook_deliveries (
    job_id      TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    key_id      TEXT,
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    next_ms     BIGINT NOT NULL,
    last_status BIGINT,
    last_error  TEXT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX webhook_due ON webhook_deliveries (state, next_ms);

-- Jobs of a key that hold a concurrency slot: raised (running < cap, one upsert) before a job
-- starts, lowered in the transaction that ends it.
CREATE TABLE key_slots (
    key_id  TEXT PRIMARY KEY,
    running BIGINT NOT NULL
);
-- 1 while the job holds its key's slot: whichever comes first, the synchronous answer or the
-- recorded end, clears it and gives the slot back, once.
ALTER TABLE jobs ADD COLUMN slot_held BIGINT;
