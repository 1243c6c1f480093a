-- The pre-aggregated dashboard (issue 13): figures the `dashboard` projection maintains beside
-- its slim rows, so that `GET /api/v1/dashboard` reads a few small rows per user instead of
-- scanning the history. Per requester; everyone's figures are the sum over the household's
-- users. Owned by the projection (rebuilt by a replay with the slim rows).

-- Counts by status and media type, and download totals: `kind` is `request_status`,
-- `request_media_type` or `download_status`, `key` the status or media type.
CREATE TABLE dashboard_totals
(
    requested_by text   NOT NULL,
    kind         text   NOT NULL,
    key          text   NOT NULL,
    count        bigint NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    items        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (requested_by, kind, key)
);

-- Per UTC day: requests submitted, requests that became available, downloads queued,
-- downloads completed.
CREATE TABLE dashboard_days
(
    requested_by        text   NOT NULL,
    day                 date   NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    available           bigint NOT NULL DEFAULT 0,
    downloads           bigint NOT NULL DEFAULT 0,
    downloads_completed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (requested_by, day)
);
CREATE INDEX dashboard_days_day_idx ON dashboard_days (day);

-- Time from submitted to available as a histogram: bucket b holds durations d (seconds) with
-- floor(4 · log2(d + 1)) = b, a quarter octave (about ±9 %).
CREATE TABLE dashboard_available_times
(
    requested_by text    NOT NULL,
    bucket       integer NOT NULL,
    count        bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (requested_by, bucket)
);

-- Requests per requester and their first, for the top-requesters list.
CREATE TABLE dashboard_requesters
(
    requested_by text PRIMARY KEY,
    requests     bigint      NOT NULL DEFAULT 0,
    first_at     timestamptz NOT NULL
);

-- Built from the slim rows an earlier version wrote.
INSERT INTO dashboard_totals (requested_by, kind, key, count)
SELECT requested_by, 'request_status', status, count(*) FROM dashboard_requests
 GROUP BY requested_by, status;
INSERT INTO dashboard_totals (requested_by, kind, key, count)
SELECT requested_by, 'request_media_type', media_type, count(*) FROM dashboard_requests
 GROUP BY requested_by, media_type;
INSERT INTO dashboard_totals (requested_by, kind, key, count, bytes, items)
SELECT requested_by, 'download_status', status, count(*), COALESCE(sum(bytes), 0),
       COALESCE(sum(items), 0)
  FROM dashboard_downloads GROUP BY requested_by, status;
INSERT INTO dashboard_days (requested_by, day, requests, available, downloads, downloads_completed)
SELECT requested_by, day, sum(requests), sum(available), sum(downloads), sum(downloads_completed)
  FROM (SELECT requested_by, (submitted_at AT TIME ZONE 'UTC')::date AS day, 1 AS requests,
               0 AS available, 0 AS downloads, 0 AS downloads_completed
          FROM dashboard_requests
        UNION ALL
        SELECT requested_by, (available_at AT TIME ZONE 'UTC')::date, 0, 1, 0, 0
          FROM dashboard_requests WHERE available_at IS NOT NULL
        UNION ALL
        SELECT requested_by, (queued_at AT TIME ZONE 'UTC')::date, 0, 0, 1, 0
          FROM dashboard_downloads
        UNION ALL
        SELECT requested_by, (finished_at AT TIME ZONE 'UTC')::date, 0, 0, 0, 1
          FROM dashboard_downloads WHERE status = 'completed' AND finished_at IS NOT NULL) t
 GROUP BY requested_by, day;
INSERT INTO dashboard_available_times (requested_by, bucket, count)
SELECT requested_by,
       floor(4 * log(2, greatest(extract(epoch FROM available_at - submitted_at), 0) + 1))::integer,
       count(*)
  FROM dashboard_requests WHERE available_at IS NOT NULL
 GROUP BY 1, 2;
INSERT INTO dashboard_requesters (requested_by, requests, first_at)
SELECT requested_by, count(*), min(submitted_at) FROM dashboard_requests GROUP BY requested_by;
