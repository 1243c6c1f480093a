-- The event store (DESIGN.md §2). postgres-es owns the first seven columns and the primary key,
-- which is the optimistic-concurrency check; MediaNest adds the global log columns.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

ALTER TABLE events
    ADD COLUMN global_position bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN recorded_at     timestamptz NOT NULL DEFAULT now();

CREATE UNIQUE INDEX events_global_position_idx ON events (global_position);
-- The global log is read in (tx_id, global_position) order behind the transaction fence.
CREATE INDEX events_tx_position_idx ON events (tx_id, global_position);

-- NOTIFY is only a wake-up for readers, which also poll. One notification per statement.
CREATE FUNCTION medianest_notify_events() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('medianest_events', (SELECT coalesce(max(global_position), 0)::text FROM new_events));
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
EXECUTE FUNCTION medianest_notify_events();

-- Cursors of everything that reads the global log: the relay, projections.
-- (tx_id, position) is the reader's cursor; tx_id is the xid8 as a number.
CREATE TABLE checkpoints
(
    name       text PRIMARY KEY,
    tx_id      bigint      NOT NULL DEFAULT 0,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key handling of mutating HTTP requests (DESIGN.md §7).
CREATE TABLE idempotency_keys
(
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (scope, key)
);

-- One active media request per (media_type, tmdb_id, is_4k): a reservation taken before the
-- `submitted` event is written and released when the request reaches a terminal status.
CREATE TABLE media_request_reservations
(
    media_type  text        NOT NULL,
    tmdb_id     bigint      NOT NULL,
    is_4k       boolean     NOT NULL,
    request_id  uuid        NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (media_type, tmdb_id, is_4k)
);
