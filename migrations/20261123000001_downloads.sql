-- Downloads (issue 4): the command side's ledger and the `downloads` read model.

-- One row per queued download, written by the `downloads` command service under a per-user
-- advisory lock before the download's events: it counts queued downloads per user and hour
-- (the per-user limit) and keeps "one active download per user and URL". `active` is
-- cleared when the download ends (completed, failed, cancelled) and set again on retry.
CREATE TABLE download_ledger
(
    download_id uuid PRIMARY KEY,
    user_id     text        NOT NULL,
    url         text        NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    active      boolean     NOT NULL DEFAULT true
);

CREATE INDEX download_ledger_user_time_idx ON download_ledger (user_id, queued_at);
CREATE INDEX download_ledger_active_url_idx ON download_ledger (user_id, url) WHERE active;

-- The `downloads` read model (DESIGN.md §5), built by the `downloads` projection from the
-- public events on JetStream. Rows carry the aggregate version (see `requests`).
CREATE TABLE downloads
(
    id                   uuid PRIMARY KEY,
    version              bigint      NOT NULL,
    status               text        NOT NULL,
    requested_by         text        NOT NULL,
    url                  text        NOT NULL,
    kind                 text        NOT NULL,
    quality              text        NOT NULL,
    container            text        NOT NULL,
    attempt              integer     NOT NULL DEFAULT 0,
    -- Items of the current attempt: [{video_id, title, path, bytes, index, total}].
    items                jsonb       NOT NULL DEFAULT '[]',
    item_count           integer     NOT NULL DEFAULT 0,
    total_items          integer,
    bytes                bigint      NOT NULL DEFAULT 0,
    error                text,
    retryable            boolean,
    cancelled_by         text,
    library_scan_status  text,
    library_section_id   text,
    library_scan_path    text,
    library_scan_error   text,
    created_at           timestamptz NOT NULL,
    started_at           timestamptz,
    finished_at          timestamptz,
    updated_at           timestamptz NOT NULL,
    last_position        bigint      NOT NULL
);

CREATE INDEX downloads_status_idx ON downloads (status, id DESC);
CREATE INDEX downloads_requested_by_idx ON downloads (requested_by, id DESC);
