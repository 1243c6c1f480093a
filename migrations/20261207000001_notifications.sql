-- Notifications (issue 14; DESIGN.md §10, docs/decisions.md "Notifications"): the household's
-- channel settings, each member's preferences, and the deliveries the notifier records.
-- Settings, not events: they are not built from the log and are not replayed.

-- One row per channel an admin has configured: `email`, `webhook`, `discord`, `slack`,
-- `telegram`, `ntfy`, `gotify`, `pushover`.
CREATE TABLE notification_channels
(
    channel    text PRIMARY KEY,
    enabled    boolean     NOT NULL,
    -- The notification types it carries for the household (e.g. every `request_pending` to
    -- a Discord channel); personal deliveries come from `notification_preferences`.
    types      text[]      NOT NULL,
    -- What may be read back: URLs, host, port, sender, chat ids.
    settings   jsonb       NOT NULL,
    -- Write-only: SMTP password, bot and app tokens, webhook signing secrets. Never selected
    -- by a read answer; only the names of the ones set are.
    secrets    jsonb       NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL
);

-- A member's choices: per personal channel, the address and the types wanted. A member
-- without a row gets the defaults (docs/decisions.md).
CREATE TABLE notification_preferences
(
    user_id     uuid PRIMARY KEY,
    preferences jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- One delivery per (event, recipient, channel): `recipient` is a user id, or `household` for
-- a channel's household destination. Written by the notifier saga before the event is
-- acknowledged; sent by the dispatcher.
CREATE TABLE notification_deliveries
(
    -- UUIDv7: ordered by creation, the cursor of the admin list; also the webhook's
    -- `webhook-id` (`msg_<id>`), the same on every attempt.
    id              uuid PRIMARY KEY,
    event_id        text        NOT NULL,
    event_position  bigint      NOT NULL,
    type            text        NOT NULL,
    recipient       text        NOT NULL,
    channel         text        NOT NULL,
    -- The personal address (e-mail, Discord user id, chat id, topic, user key); NULL for the
    -- household destination.
    address         text,
    -- The rendered message (title, body, link, poster; no secret).
    message         jsonb       NOT NULL,
    -- `pending`, `retrying`, `sent` or `dead`.
    status          text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    -- Transient failures are retried until then, then the delivery is `dead`.
    give_up_at      timestamptz NOT NULL,
    last_error      text,
    -- A dispatcher holds the delivery until then (claimed, being sent).
    claimed_until   timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    UNIQUE (event_id, recipient, channel)
);

CREATE INDEX notification_deliveries_due_idx
    ON notification_deliveries (channel, next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX notification_deliveries_status_idx ON notification_deliveries (status, id DESC);
CREATE INDEX notification_deliveries_channel_idx ON notification_deliveries (channel, id DESC);
