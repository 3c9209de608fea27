-- One dialect for SQLite and PostgreSQL: BIGINT, DOUBLE PRECISION and TEXT only.

-- One row a job. Written by the gateway at submission, then advanced by its events; a status
-- only moves forward (rank 0 queued, 1 running, 2 succeeded or failed).
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    pipeline          TEXT NOT NULL,
    status            TEXT NOT NULL,
    status_rank       BIGINT NOT NULL,
    -- The JobSpec as JSON, to start the job again after a crash of the embedded broker.
    spec              TEXT,
    callback_url      TEXT,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    finished_ms       BIGINT,
    result_key        TEXT,
    result_size       BIGINT,
    content_type      TEXT,
    result_expires_ms BIGINT,
    -- Set once the result is gone: swept after its TTL, or handed over synchronously.
    result_deleted_ms BIGINT,
    error_reason      TEXT,
    error_message     TEXT,
    error_stage       TEXT
);

CREATE INDEX jobs_unfinished ON jobs (status_rank, updated_ms);
CREATE INDEX jobs_result_expiry ON jobs (result_expires_ms);

-- One row a finished step of a job.
CREATE TABLE job_stages (
    job_id TEXT NOT NULL,
    step   BIGINT NOT NULL,
    stage  TEXT NOT NULL,
    ms     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, step)
);
