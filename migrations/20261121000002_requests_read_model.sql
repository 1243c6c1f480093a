-- The `requests` read model (DESIGN.md §5), built by the `requests` projection.
CREATE TABLE requests
(
    id                   uuid PRIMARY KEY,
    version              bigint      NOT NULL,
    status               text        NOT NULL,
    media_type           text        NOT NULL,
    tmdb_id              bigint      NOT NULL,
    tvdb_id              bigint,
    title                text        NOT NULL,
    year                 integer,
    seasons              jsonb,
    is_4k                boolean     NOT NULL,
    note                 text,
    requested_by         text        NOT NULL,
    approved_by          text,
    overseerr_request_id bigint,
    available_seasons    jsonb,
    status_reason        text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_position        bigint      NOT NULL
);

CREATE INDEX requests_status_idx ON requests (status, id DESC);
CREATE INDEX requests_requested_by_idx ON requests (requested_by, id DESC);
CREATE INDEX requests_media_idx ON requests (media_type, tmdb_id, is_4k);
CREATE INDEX requests_overseerr_idx ON requests (overseerr_request_id);
