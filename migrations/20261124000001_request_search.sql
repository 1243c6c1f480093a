-- The `request_search` read model (DESIGN.md §5, issue 5), built by the `request_search`
-- projection from the public events on JetStream: full-text and trigram search over media
-- requests (title, year, requester's username).
--
-- A replay rebuilds these tables as `CREATE TABLE shadow.t (LIKE public.t INCLUDING ALL)`
-- and swaps them in, so: no foreign keys, no triggers, no sequences or identity columns.
-- The generated column and the indexes (trigram opclasses included) are copied along.

-- Trigram similarity (`similarity`, `word_similarity`, `<%`, `gin_trgm_ops`). A trusted
-- extension since PostgreSQL 13; it lives in `public`, which the replay's
-- `search_path = shadow, public` still resolves.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per media request. Rows carry the aggregate `version` (see `requests`); an event
-- only changes a row whose version is below its sequence. `requester` is the requester's
-- current username (from `request_search_users`), NULL when unknown (e.g. a request of the
-- bootstrap admin token).
CREATE TABLE request_search
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    status        text        NOT NULL,
    media_type    text        NOT NULL,
    title         text        NOT NULL,
    year          integer,
    requested_by  text        NOT NULL,
    requester     text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL,
    -- Full-text document, `simple` configuration (no stemming, no stop words: titles are
    -- names in any language, and "It", "Up" or "The Who" must stay findable). Weights rank a
    -- title hit (A) above a requester hit (B) above a year hit (C).
    document      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', coalesce(requester, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(year::text, '')), 'C')
    ) STORED
);

CREATE INDEX request_search_document_idx ON request_search USING gin (document);
CREATE INDEX request_search_title_trgm_idx ON request_search USING gin (title gin_trgm_ops);
CREATE INDEX request_search_requester_trgm_idx ON request_search USING gin (requester gin_trgm_ops);
CREATE INDEX request_search_requested_by_idx ON request_search (requested_by);
CREATE INDEX request_search_year_idx ON request_search (year);

-- User id → current username, from `user_account` events (`registered`, and
-- `profile_updated` when it carries a new username), so search rows follow renames. Rows
-- carry the account's aggregate `version`, like the rows above.
CREATE TABLE request_search_users
(
    id            uuid PRIMARY KEY,
    version       bigint      NOT NULL,
    username      text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_position bigint      NOT NULL
);
