-- The health of the external services as the sagas' circuit breakers see it (DESIGN.md §6;
-- issue 5): one row per service, written by the workers on every breaker transition and,
-- throttled, as failures accrue. Process state, not a read model: it is not built from
-- events and is not replayed. Shown by `GET /api/v1/dashboard`.
CREATE TABLE service_health
(
    -- 'overseerr', 'plex' or 'ytdlp'.
    service              text PRIMARY KEY,
    -- 'closed', 'open' or 'half_open'.
    state                text        NOT NULL,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    last_error           text,
    last_failure_at      timestamptz,
    last_success_at      timestamptz,
    -- When the breaker last opened (kept after it closes again).
    opened_at            timestamptz,
    -- When the breaker entered its current state (or the worker started).
    state_since          timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
