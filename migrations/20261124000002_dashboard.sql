-- The `dashboard` read model (DESIGN.md §5, issue 5), built by the `dashboard` projection
-- from the public events on JetStream: one slim row per media request and per download, from
-- which the query API computes counts by status, per-day series, time to available, top
-- requesters and download totals with SQL.
--
-- Rows carry the aggregate version (an event only updates a row below its sequence, as in
-- `requests`). Times are the events' times, never now(), so a replay builds identical rows.
-- No foreign keys, triggers or sequences: `medianest replay` rebuilds these tables as shadow
-- copies (`CREATE TABLE … (LIKE … INCLUDING ALL)`) and swaps them in.
CREATE TABLE dashboard_requests
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    requested_by  text        NOT NULL,
    media_type    text        NOT NULL,
    -- The wire status, as in `requests`.
    status        text        NOT NULL,
    submitted_at  timestamptz NOT NULL,
    -- When it first became available (the `available` event's time).
    available_at  timestamptz,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL
);

CREATE INDEX dashboard_requests_requested_by_idx ON dashboard_requests (requested_by, submitted_at);
CREATE INDEX dashboard_requests_submitted_idx ON dashboard_requests (submitted_at);
CREATE INDEX dashboard_requests_available_idx ON dashboard_requests (available_at)
    WHERE available_at IS NOT NULL;

CREATE TABLE dashboard_downloads
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    requested_by  text        NOT NULL,
    status        text        NOT NULL,
    queued_at     timestamptz NOT NULL,
    -- When the current attempt completed, failed or was cancelled.
    finished_at   timestamptz,
    -- Bytes and files of the current attempt's items.
    bytes         bigint      NOT NULL DEFAULT 0,
    items         integer     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL
);

CREATE INDEX dashboard_downloads_requested_by_idx ON dashboard_downloads (requested_by, queued_at);
CREATE INDEX dashboard_downloads_queued_idx ON dashboard_downloads (queued_at);
