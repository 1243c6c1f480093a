-- Request search ranks by word closeness (issue 11): the search scores each word of the query
-- by its edit distance to the words of a request (`levenshtein_less_equal`), so "matrx"
-- ranks "The Matrix" (one letter off a whole word) above "Matrimony" (more shared trigrams).
-- See `projections/src/search.rs` and docs/decisions.md, "Request search ranks by word
-- closeness".
--
-- Only the query uses it: no table, column or index changes, so replays (shadow tables in
-- `replay_<projection>`) are unaffected. A trusted extension since PostgreSQL 13; like
-- pg_trgm it lives in `public`.
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
