-- The Plex library read model (issue 11, docs/architecture.md "Plex library"): what the Plex
-- Media Server has, kept by the Plex sync worker from the PMS library routes. It is the outside
-- world's state, not ours: no event feeds it, and it can always be rebuilt by a full pass.

-- One row per movie or show that carries a `tmdb://` or `tvdb://` guid (Plex's new agents).
CREATE TABLE plex_library
(
    rating_key     text PRIMARY KEY,
    section_key    text        NOT NULL,
    media_type     text        NOT NULL CHECK (media_type IN ('movie', 'tv')),
    tmdb_id        bigint,
    tvdb_id        bigint,
    title          text        NOT NULL,
    year           integer,
    -- The item is available in HD (a non-4K medium outside a 4K section) and/or in 4K
    -- (a 4K medium, or any item of a section marked 4K).
    has_hd         boolean     NOT NULL,
    has_4k         boolean     NOT NULL,
    added_at       timestamptz,
    -- The full pass that last saw the item; a full pass deletes the rows of a section it did
    -- not see (removals).
    last_seen_pass bigint      NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (tmdb_id IS NOT NULL OR tvdb_id IS NOT NULL)
);

CREATE INDEX plex_library_tmdb_idx ON plex_library (media_type, tmdb_id) WHERE tmdb_id IS NOT NULL;
CREATE INDEX plex_library_tvdb_idx ON plex_library (tvdb_id) WHERE tvdb_id IS NOT NULL;
CREATE INDEX plex_library_section_pass_idx ON plex_library (section_key, last_seen_pass);

-- The seasons of the shows above (Plex's `type=3` items; `index` is the season number).
CREATE TABLE plex_library_seasons
(
    rating_key      text PRIMARY KEY,
    show_rating_key text    NOT NULL REFERENCES plex_library (rating_key) ON DELETE CASCADE,
    season_number   integer NOT NULL,
    episodes        integer NOT NULL DEFAULT 0,
    last_seen_pass  bigint  NOT NULL
);

CREATE INDEX plex_library_seasons_show_idx ON plex_library_seasons (show_rating_key);

-- The sync worker's state (one row): the full pass number, whether one is under way (so a
-- restart resumes it), the recently-added high-water mark, and an admin's request for a pass.
CREATE TABLE plex_sync_state
(
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    pass               bigint      NOT NULL DEFAULT 0,
    full_running       boolean     NOT NULL DEFAULT false,
    full_started_at    timestamptz,
    full_finished_at   timestamptz,
    recent_started_at  timestamptz,
    recent_finished_at timestamptz,
    full_requested_at  timestamptz,
    recent_requested_at timestamptz,
    last_error         text
);

INSERT INTO plex_sync_state (id) VALUES (true);

-- Where a full pass stands in each section and item kind (1 movies, 2 shows, 3 seasons):
-- the next `X-Plex-Container-Start`, so a pass resumes after a crash or an outage.
CREATE TABLE plex_sync_progress
(
    pass        bigint   NOT NULL,
    section_key text     NOT NULL,
    kind        smallint NOT NULL,
    next_start  bigint   NOT NULL DEFAULT 0,
    done        boolean  NOT NULL DEFAULT false,
    PRIMARY KEY (pass, section_key, kind)
);
