-- The vocabulary of request search (issue 13): the distinct words of the `request_search`
-- documents, kept by the `request_search` projection in the transaction that writes the rows
-- (and rebuilt with them by a replay), so a search grades its words against this table
-- instead of reading every document (`ts_stat`) on each query. See
-- `projections/src/search.rs` and docs/decisions.md, "Search reads a maintained vocabulary".
--
-- Words are only added: a word no row has any more (a requester's old name) matches no row,
-- so it changes no answer. Like the other read-model tables: no foreign keys or triggers, so
-- a replay's `LIKE … INCLUDING ALL` copy works.
CREATE TABLE request_search_words
(
    word   text PRIMARY KEY,
    -- Length in characters, and whether the word is only digits: the search skips words
    -- that cannot be within two typos of a query word without computing the edit distance.
    chars  integer GENERATED ALWAYS AS (length(word)) STORED,
    digits boolean GENERATED ALWAYS AS (word ~ '^[0-9]+$') STORED
);

INSERT INTO request_search_words (word)
SELECT word FROM ts_stat('SELECT document FROM request_search');

-- The rows holding any of a set of words (`tsvector_to_array(document) && words`), for the
-- closeness of a selective search without scanning every row.
CREATE INDEX request_search_words_idx ON request_search USING gin (tsvector_to_array(document));

-- The title as the search compares it with the query for an exact title: trimmed, spaces
-- folded, lower case. Computed once per row instead of once per row and query.
ALTER TABLE request_search
    ADD COLUMN title_key text GENERATED ALWAYS AS (lower(regexp_replace(btrim(title), '\s+', ' ', 'g'))) STORED;
