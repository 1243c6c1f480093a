-- Users and sessions (issue 3): the tables that keep rules spanning aggregates, and the
-- `users` and `sessions` read models (DESIGN.md §3, §5).

-- One account per identity: `plex` (plex.tv account id) and `local` (lower-cased local
-- username). Written before `registered`; a row whose account was never written (a crash
-- in between) is taken over after a grace period.
CREATE TABLE user_identities
(
    kind        text        NOT NULL,
    key         text        NOT NULL,
    user_id     uuid        NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- The request-quota ledger: one row per submitted media request, counted against the
-- requester's quota until it is declined or cancelled (Overseerr's semantics).
CREATE TABLE request_quota_ledger
(
    request_id   uuid PRIMARY KEY,
    user_id      text        NOT NULL,
    media_type   text        NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    released     boolean     NOT NULL DEFAULT false
);
CREATE INDEX request_quota_ledger_user_idx
    ON request_quota_ledger (user_id, media_type, submitted_at);

-- plex.tv PINs already exchanged for a session: a PIN signs in once.
CREATE TABLE plex_pins_used
(
    pin_id  bigint PRIMARY KEY,
    user_id uuid,
    used_at timestamptz NOT NULL DEFAULT now()
);

-- Facts about this installation: the stable X-Plex-Client-Identifier sent to plex.tv.
CREATE TABLE installation
(
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    client_identifier uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- The `users` read model, built by the `users` projection from the PostgreSQL log (it holds
-- e-mail addresses, which never leave PostgreSQL).
CREATE TABLE users
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    plex_id       bigint,
    username      text        NOT NULL,
    email         text,
    avatar        text,
    role          text        NOT NULL,
    method        text        NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false,
    movie_quota   jsonb,
    tv_quota      jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL
);
CREATE INDEX users_role_idx ON users (role);

-- The `sessions` read model, built by the `sessions` projection from the PostgreSQL log
-- (token hashes, IPs and user agents never leave PostgreSQL). Authentication reads it.
CREATE TABLE sessions
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    user_id       uuid        NOT NULL,
    status        text        NOT NULL,
    method        text        NOT NULL,
    device        jsonb       NOT NULL,
    ip            text,
    user_agent    text,
    token_sha256  text        NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    refreshed_at  timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text,
    last_position bigint      NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at DESC);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at) WHERE status = 'active';
