//! The `request_search` read model (docs/design.md §5): full-text and trigram search over media
//! requests by title, year and requester's username.
//!
//! Fed from JetStream (public event forms). Besides `media_request` events the projection
//! reads `user_account` events (`registered`, `profile_updated`) into a small table of user
//! id → username, so each search row carries its requester's current name and follows
//! renames. Rows of both tables carry their aggregate `version`; an event only updates a
//! row whose version is below the event's sequence, a second guard (beside the checkpoint)
//! against applying an event twice.
//!
//! Ranking (see [`search`]): first by *word closeness* — each word of the query takes its
//! best grade among the request's words (title, requester, year): exact, prefix, one typo,
//! two typos — so a one-letter typo of a whole word ("matrx" → "The Matrix") outranks a
//! title that merely shares more trigrams ("Matrimony"). Ties are broken by the relevance
//! rank: PostgreSQL full-text search with the `simple` configuration (titles are names in
//! any language: no stemming, no stop words), pg_trgm similarity on the title and the
//! requester, an exact title and a year named in the query. Edit distances come from
//! `fuzzystrmatch` (`levenshtein_less_equal`); only the query uses them, the tables carry
//! nothing extra, so replays are unaffected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaRequestEvent, MediaType, RequestStatus};
use medianest_domain::public::media_request_event;
use medianest_nats::FeedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::answers::{Answers, Changes};
use crate::runner::{
    decode_batch, finish_row_update, public_event, row_update, status_after, BatchRows,
};
use crate::{Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "request_search";

/// The search rows' table.
const TABLE: &str = "request_search";

/// The user id → username table.
const USERS_TABLE: &str = "request_search_users";

/// The vocabulary: every word of the documents (words are only added; one no row has any
/// more matches nothing).
const WORDS_TABLE: &str = "request_search_words";

/// Least `word_similarity` (0 to 1) between the query's words and a title or requester for
/// a trigram match. pg_trgm's default, 0.6, misses one wrong letter in a six-letter word
/// ("matrex" → "Matrix" scores 0.57); 0.5 already confuses five-letter words that share
/// their first three letters ("alice" → "Alien" scores 0.5).
pub const WORD_SIMILARITY_THRESHOLD: f64 = 0.55;

/// The `request_search` projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchProjection;

#[async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request", "user_account"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE, USERS_TABLE, WORDS_TABLE]
    }

    /// Rows changed: cached search answers are stale.
    fn committed(&self) {
        CHANGES.mark();
    }

    async fn apply(&self, tx: &mut PgConnection, event: &FeedEvent) -> Result<(), ProjectionError> {
        if event.aggregate_type() == "user_account" {
            apply_account_event(tx, event).await
        } else {
            public_event(event, media_request_event)?;
            apply_requests(tx, &[event]).await.map(|_| ())
        }
    }

    /// Runs of request events are folded in memory and written in one upsert; an account
    /// event (rare: a registration or a rename) is applied on its own between them, in log
    /// order, since a rename changes the rows of that requester.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&FeedEvent],
    ) -> Result<usize, ProjectionError> {
        let mut skipped = 0;
        let mut start = 0;
        for (i, event) in events.iter().enumerate() {
            if event.aggregate_type() != "user_account" {
                continue;
            }
            skipped += apply_requests(tx, &events[start..i]).await?;
            match apply_account_event(tx, event).await {
                Ok(()) => {}
                Err(ProjectionError::Undecodable { id, reason }) => {
                    tracing::warn!(%id, %reason, projection = NAME, "skipping undecodable event");
                    skipped += 1;
                }
                Err(error) => return Err(error),
            }
            start = i + 1;
        }
        skipped += apply_requests(tx, &events[start..]).await?;
        Ok(skipped)
    }
}

/// Folds request events in memory per row (the rows read in one query, the requesters'
/// names in another) and writes the changed rows in one upsert; answers how many events
/// were undecodable and passed over.
async fn apply_requests(
    tx: &mut PgConnection,
    events: &[&FeedEvent],
) -> Result<usize, ProjectionError> {
    if events.is_empty() {
        return Ok(0);
    }
    let (decoded, skipped) = decode_batch(NAME, events, |e| {
        public_event(e, media_request_event).map(Some)
    })?;
    let decoded: Vec<(Uuid, &FeedEvent, MediaRequestEvent)> =
        decoded.into_iter().map(|(e, (id, d))| (id, e, d)).collect();
    let ids: Vec<Uuid> = decoded.iter().map(|(id, ..)| *id).collect();
    let mut rows: BatchRows<SearchRow> = BatchRows::read(
        tx,
        &format!(
            "SELECT id, version, status, media_type, title, year, requested_by, requester,
                    created_at, updated_at, last_position FROM {TABLE} WHERE id = ANY($1)"
        ),
        &ids,
        |row: &SearchRow| row.id,
    )
    .await?;
    // The requester's name, when their account is known (user ids are UUIDs; a `system:`
    // actor has none).
    let requesters: Vec<Uuid> = decoded
        .iter()
        .filter_map(|(_, _, e)| match e {
            MediaRequestEvent::Submitted { requested_by, .. } => {
                requested_by.user_id().map(Uuid::from)
            }
            _ => None,
        })
        .collect();
    let names: HashMap<Uuid, String> = if requesters.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, String)>(&format!(
            "SELECT id, username FROM {USERS_TABLE} WHERE id = ANY($1)"
        ))
        .bind(&requesters)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect()
    };
    for (id, event, e) in decoded {
        rows.fold(id, |rows| fold(rows, &names, id, event, e));
    }
    let changed = rows.changed();
    if !changed.is_empty() {
        upsert(tx, &changed).await?;
    }
    Ok(skipped)
}

/// Applies one request event to the rows: a `submitted` creates its row once; every later
/// event moves a row below its sequence, most also its status, with the same transitions as
/// the `requests` read model. Answers whether the row changed.
fn fold(
    rows: &mut HashMap<Uuid, SearchRow>,
    names: &HashMap<Uuid, String>,
    id: Uuid,
    event: &FeedEvent,
    decoded: MediaRequestEvent,
) -> bool {
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    if let MediaRequestEvent::Submitted {
        requested_by,
        media,
        ..
    } = decoded
    {
        if rows.contains_key(&id) {
            return false;
        }
        let requester = requested_by
            .user_id()
            .and_then(|user| names.get(&user.as_uuid()).cloned());
        rows.insert(
            id,
            SearchRow {
                id,
                version: sequence,
                status: RequestStatus::Pending.as_str().to_string(),
                media_type: media.media_type.as_str().to_string(),
                title: media.title,
                year: media.year.map(i32::from),
                requested_by: requested_by.to_string(),
                requester,
                created_at: time,
                updated_at: time,
                last_position: position,
            },
        );
        return true;
    }
    let Some(row) = rows.get_mut(&id).filter(|row| row.version < sequence) else {
        return false;
    };
    let status = status_after(&row.status, &decoded);
    if let Some(status) = status {
        row.status = status.as_str().to_string();
    }
    row.version = sequence;
    row.updated_at = time;
    row.last_position = position;
    true
}

/// Writes `rows` (whole; the document column follows) in one statement.
async fn upsert(tx: &mut PgConnection, rows: &[&SearchRow]) -> Result<(), sqlx::Error> {
    macro_rules! column {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
        };
    }
    // The new rows' words join the vocabulary in the same statement (a changed row's words
    // are there already: the document only follows the title, the requester and the year).
    // A row the upsert inserted has no `xmax`; one it updated carries this transaction's.
    sqlx::query(&format!(
        "WITH written AS (
             INSERT INTO {TABLE} (id, version, status, media_type, title, year, requested_by,
                 requester, created_at, updated_at, last_position)
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[],
                 $6::int4[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[],
                 $11::int8[])
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version,
                 status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
                 last_position = EXCLUDED.last_position
             RETURNING document, xmax = 0 AS created)
         INSERT INTO {WORDS_TABLE} (word)
         SELECT DISTINCT unnest(tsvector_to_array(document)) FROM written WHERE created
         ON CONFLICT DO NOTHING"
    ))
    .bind(column!(id))
    .bind(column!(version))
    .bind(column!(status))
    .bind(column!(media_type))
    .bind(column!(title))
    .bind(column!(year))
    .bind(column!(requested_by))
    .bind(column!(requester))
    .bind(column!(created_at))
    .bind(column!(updated_at))
    .bind(column!(last_position))
    .execute(tx)
    .await?;
    Ok(())
}

/// What the projection takes from an account event's public form.
enum AccountChange {
    /// `registered`: the first username.
    Registered { username: String },
    /// `profile_updated`: a new username, when it changed.
    ProfileUpdated { username: Option<String> },
    /// Any other account event: only the version moves.
    Other,
}

/// Decodes the public form (`data`) of a `user_account` event of type `event_type`.
fn account_change(event_type: &str, data: &Value) -> Result<AccountChange, serde_json::Error> {
    #[derive(Deserialize)]
    struct Registered {
        username: String,
    }
    #[derive(Deserialize)]
    struct ProfileUpdated {
        #[serde(default)]
        username: Option<String>,
    }
    Ok(match event_type {
        "registered" => AccountChange::Registered {
            username: Registered::deserialize(data)?.username,
        },
        "profile_updated" => AccountChange::ProfileUpdated {
            username: ProfileUpdated::deserialize(data)?.username,
        },
        _ => AccountChange::Other,
    })
}

async fn apply_account_event(
    tx: &mut PgConnection,
    event: &FeedEvent,
) -> Result<(), ProjectionError> {
    let (id, change) = public_event(event, account_change)?;
    let (sequence, position, time) = (event.event.sequence, event.cursor.position, event.time());
    let renamed = match change {
        AccountChange::Registered { username } => {
            sqlx::query(
                "INSERT INTO request_search_users (id, version, username, updated_at, last_position)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(sequence)
            .bind(username)
            .bind(time)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            true
        }
        AccountChange::ProfileUpdated { username } => {
            let mut update = row_update(USERS_TABLE, sequence, time, position);
            let renamed = username.is_some();
            if let Some(username) = username {
                update.push(", username = ").push_bind(username);
            }
            finish_row_update(update, id, sequence, tx).await?;
            renamed
        }
        AccountChange::Other => {
            finish_row_update(
                row_update(USERS_TABLE, sequence, time, position),
                id,
                sequence,
                tx,
            )
            .await?;
            false
        }
    };
    if renamed {
        // From the table, not the event: a redelivered old event cannot bring back an old
        // name.
        sqlx::query(
            "UPDATE request_search AS r SET requester = u.username
             FROM request_search_users AS u
             WHERE u.id = $1 AND r.requested_by = $2 AND r.requester IS DISTINCT FROM u.username",
        )
        .bind(id)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO request_search_words (word)
             SELECT unnest(tsvector_to_array(to_tsvector('simple', username)))
               FROM request_search_users WHERE id = $1
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct SearchRow {
    /// Request id.
    pub id: Uuid,
    /// Aggregate version the row reflects.
    pub version: i64,
    /// Wire status (`pending`, …).
    pub status: String,
    /// `movie` or `tv`.
    pub media_type: String,
    /// Title.
    pub title: String,
    /// Release year.
    pub year: Option<i32>,
    /// Requester's user id.
    pub requested_by: String,
    /// Requester's current username; `None` when the account is unknown.
    pub requester: Option<String>,
    /// When submitted.
    pub created_at: DateTime<Utc>,
    /// Last change of the request.
    pub updated_at: DateTime<Utc>,
    /// Global position of the last request event applied.
    pub last_position: i64,
}

/// A search result: the row and its relevance.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct SearchHit {
    /// The row.
    #[sqlx(flatten)]
    pub row: SearchRow,
    /// Relevance, higher is better (see [`search`]), rounded to 4 decimals: the word
    /// closeness (integer part) plus the rank mapped below 1.
    pub score: f64,
}

/// A search: the text and the filters; all filters optional.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// What the user typed (non-empty; the query API caps it at 200 characters).
    pub text: String,
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this media type.
    pub media_type: Option<MediaType>,
    /// Only this requester's requests (user id): the visibility of non-admins.
    pub requested_by: Option<String>,
}

/// Splits the 4-digit tokens (years, `(1999)` included) off `text`: answers the rest, the
/// words, and the years.
fn split_years(text: &str) -> (String, Vec<i32>) {
    let mut words = Vec::new();
    let mut years = Vec::new();
    for token in text.split_whitespace() {
        let bare = token.trim_matches(|c: char| !c.is_alphanumeric());
        match bare.parse::<i32>() {
            Ok(year) if bare.len() == 4 && bare.bytes().all(|b| b.is_ascii_digit()) => {
                years.push(year);
            }
            _ => words.push(token),
        }
    }
    (words.join(" "), years)
}

/// The words of `text` that word closeness grades: all of them but the web-search
/// operators — excluded words (`-word`) and `or`. Years stay: a year is one of a request's
/// words.
fn graded_words(text: &str) -> String {
    text.split_whitespace()
        .filter(|token| !token.starts_with('-') && !token.eq_ignore_ascii_case("or"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The search: `$1` the text, `$2` its words (`$1` without 4-digit tokens, or `$1` when it
/// is only years), `$3` the years, `$4` whether the text is only years, `$5` the words
/// closeness grades ([`graded_words`]), `$6` status, `$7` media type, `$8` requester (each
/// `NULL` for any), `$9` the limit.
///
/// A query *term* is a lexeme of `$5` and a request's *words* are the lexemes of its
/// `document` (title, requester, year), both from the `simple` parser, so both sides split
/// and fold case alike. Grades are computed once per distinct word of the read model (the
/// vocabulary, `request_search_words`), not per row, and only for the words that can be close.
const SEARCH_SQL: &str = r"
WITH q AS (
    SELECT websearch_to_tsquery('simple', $1) AS tsquery,
           lower(regexp_replace(btrim($1), '\s+', ' ', 'g')) AS text,
           lower(regexp_replace(btrim($2), '\s+', ' ', 'g')) AS words,
           tsvector_to_array(to_tsvector('simple', $5)) AS terms
),
-- Each term against the words of the vocabulary that can be close to it, with their edit
-- distance (capped at 2) when typos count: terms of 4 to 253 characters (levenshtein takes
-- at most 255), not numbers, words at most 2 characters longer or shorter. A word of digits
-- only is at least as many edits away from a term as the term has other characters.
pairs AS (
    SELECT term, word,
           CASE WHEN t.chars BETWEEN 4 AND 253 AND NOT t.number
                     AND abs(v.chars - t.chars) <= 2
                THEN levenshtein_less_equal(term, word, 2) END AS edits
    FROM unnest((SELECT terms FROM q)) AS term
    CROSS JOIN LATERAL (
        SELECT length(term) AS chars, term ~ '^[0-9]+$' AS number,
               length(regexp_replace(term, '[0-9]', '', 'g')) AS others
    ) AS t
    JOIN request_search_words AS v
      ON v.word = term
      OR (t.chars >= 3 AND starts_with(v.word, term))
      OR (v.chars BETWEEN t.chars - 2 AND t.chars + 2 AND NOT (v.digits AND t.others >= 3))
),
-- The close pairs and their grade: 4 the same word, 3 a prefix (terms of 3 or more
-- characters, not numbers), 2 one typo, 1 two typos (terms of 7 or more characters).
close_words AS (
    SELECT term, word, grade
    FROM pairs
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN word = term THEN 4
            WHEN length(term) >= 3 AND term !~ '^[0-9]+$' AND starts_with(word, term) THEN 3
            WHEN edits = 1 THEN 2
            -- Two neighbouring letters swapped are one typo, as in Damerau's distance.
            WHEN edits = 2 AND length(word) = length(term) AND EXISTS (
                SELECT FROM generate_series(1, length(term) - 1) AS i
                WHERE overlay(term PLACING substr(term, i + 1, 1) || substr(term, i, 1)
                              FROM i FOR 2) = word
            ) THEN 2
            WHEN edits = 2 AND length(term) >= 7 THEN 1
            ELSE 0
        END AS grade
    ) AS g
    WHERE grade > 0
),
-- Per request with a close word: the closeness (the sum over terms of each term's best
-- grade among the request's words) and how many terms have a close word.
closeness AS (
    SELECT id, sum(best)::integer AS closeness, count(*) AS close_terms
    FROM (
        SELECT r.id, c.term, max(c.grade) AS best
        FROM close_words AS c
        JOIN request_search AS r ON tsvector_to_array(r.document) @> ARRAY[c.word]
        GROUP BY r.id, c.term
    ) AS best_per_term
    GROUP BY id
),
-- Materialized: the outer query names the rank twice, and inlined, each row's rank would be
-- computed twice.
hits AS MATERIALIZED (
    SELECT r.id, version, status, media_type, title, year, requested_by, requester,
           created_at, updated_at, last_position,
           coalesce(c.closeness, 0) AS closeness,
           CASE WHEN title_key = q.text
                  OR (title_key = q.words
                      AND (cardinality($3::integer[]) = 0 OR year = ANY($3)))
                THEN 1 ELSE 0 END
           + similarity($2, title)
           + word_similarity($2, title)
           + ts_rank(document, q.tsquery)
           + 0.5 * coalesce(word_similarity($2, requester), 0)
           + CASE WHEN year = ANY($3) THEN 1 ELSE 0 END AS rank
    FROM request_search AS r
    CROSS JOIN q
    LEFT JOIN closeness AS c ON c.id = r.id
    -- The cheap tests first: a row the full text or the closeness matched costs no
    -- trigram test.
    WHERE (document @@ q.tsquery
           OR c.close_terms = cardinality(q.terms)
           OR ($4 AND year = ANY($3))
           OR $2 <% title
           OR $2 <% requester)
      AND ($6::text IS NULL OR status = $6)
      AND ($7::text IS NULL OR media_type = $7)
      AND ($8::text IS NULL OR requested_by = $8)
)
SELECT id, version, status, media_type, title, year, requested_by, requester, created_at,
       updated_at, last_position,
       round((closeness + rank / (1 + rank))::numeric, 4)::float8 AS score
FROM hits
ORDER BY score DESC, id DESC
LIMIT $9
";

/// The matching requests, best first (ties: newest first), at most `limit`.
///
/// A row matches when any of these holds:
/// - full text: `websearch_to_tsquery('simple', text)` matches the title, requester and year
///   (quotes, `or` and `-word` work as on web search engines);
/// - trigrams: the words of the text (the text without its 4-digit tokens) are
///   word-similar ([`WORD_SIMILARITY_THRESHOLD`]) to the title or the requester;
/// - closeness: every word of the text (but `-word` and `or`) is close to a word of the
///   title, the requester or the year (any grade below);
/// - the text is only years, and the row's year is one of them.
///
/// The order is by *closeness*, then by *rank*. Closeness sums, over the words of the text,
/// each word's best grade among the row's words (title, requester's name, year):
///
/// | grade | the row's word… | for query words of |
/// |---|---|---|
/// | 4 | is the query word | any length |
/// | 3 | starts with it | 3+ characters |
/// | 2 | is one typo away (an insertion, deletion, substitution, or two neighbouring letters swapped) | 4+ characters |
/// | 1 | is two typos away | 7+ characters |
///
/// Numbers only match exactly (years: "1998" is not a typo of "1999"). The typo lengths
/// are Typesense's defaults: one typo in "cat" would also find "car", "hat" and "bat".
/// Rank, the tie-break, adds: 1 for an exact title (case and spacing aside; with a year in
/// the text, only when the year matches too), `similarity` and `word_similarity` of the
/// words and the title (0 to 1 each: closer and shorter titles first), `ts_rank` of the
/// full-text match, half the requester's `word_similarity`, and 1 when the row's year is in
/// the text.
///
/// The score is `closeness + rank / (1 + rank)`, rounded to 4 decimals: its integer part is
/// the closeness and its fraction (below 1) grows with the rank, so ordering by score is
/// ordering by closeness, then rank. An exact title has every word exact, the highest
/// closeness, and wins its ties by its rank's 1.
///
/// Cost: the closeness is graded over the vocabulary (`request_search_words`, only the words
/// that can be close) and finds its rows through an index; every row matching the full text
/// is ranked, and a row that does not is tested for trigram similarity. Measured with
/// `EXPLAIN ANALYZE` at 9,425 requests: a word in every title 130–170 ms (the rank of each
/// row), a word in none 45–65 ms (docs/benchmarks.md).
///
/// # Errors
/// The database error.
pub async fn search(
    pool: &PgPool,
    query: &SearchQuery,
    limit: i64,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let text = query.text.trim();
    let (words, years) = split_years(text);
    // A text of years only ("1999", "1917") is also matched as words: "1917" is a title too.
    let (words, years_only) = if words.is_empty() {
        (text.to_string(), true)
    } else {
        (words, false)
    };
    let mut tx = pool.begin().await?;
    // Local to this transaction: the threshold of `<%`, which the trigram indexes serve; and
    // no JIT: the planner's blind estimates of `unnest` and of the grading join make even a
    // small search look costly enough to compile, a second's work to save milliseconds.
    sqlx::query(
        "SELECT set_config('pg_trgm.word_similarity_threshold', $1, true),
                set_config('jit', 'off', true)",
    )
    .bind(WORD_SIMILARITY_THRESHOLD.to_string())
    .execute(&mut *tx)
    .await?;
    let sql = sqlx::query_as(SEARCH_SQL)
        .bind(text)
        .bind(&words)
        .bind(&years)
        .bind(years_only)
        .bind(graded_words(text))
        .bind(query.status.map(RequestStatus::as_str))
        .bind(query.media_type.map(MediaType::as_str))
        .bind(query.requested_by.as_deref())
        .bind(limit);
    let hits = sql.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(hits)
}

/// Changes of the `request_search` read model in this process.
static CHANGES: Changes = Changes::new();

/// How long a cached answer is used before it is searched again; it is used at most twice as
/// long ([`crate::answers`]), the bound on how late a change of the read model made by another
/// process (a replay run by the CLI, a second instance's projection) shows in this one.
pub const ANSWER_TTL: Duration = Duration::from_secs(5);

/// What a search answer is cached by: the text, the filters and the limit.
type SearchKey = (
    String,
    Option<&'static str>,
    Option<&'static str>,
    Option<String>,
    i64,
);

/// [`search`] with its answers cached (at most 1,000, each searched again after [`ANSWER_TTL`];
/// [`crate::answers`]) by text, filters and limit, until this process's `request_search`
/// projection commits.
///
/// A search reads the whole read model (its vocabulary and every matching row), so the same
/// search asked again and again — a saved search, a burst of clients — is the search that
/// can saturate the database; a cached answer costs no query. Callers that must see a given
/// position (`min_position`) read the read model with [`search`].
#[derive(Debug)]
pub struct SearchAnswers {
    answers: Answers<SearchKey, Arc<Vec<SearchHit>>>,
}

impl Default for SearchAnswers {
    fn default() -> Self {
        Self {
            answers: Answers::new(&CHANGES, 1_000, ANSWER_TTL),
        }
    }
}

impl SearchAnswers {
    /// The answer of `query` (at most `limit` hits), cached or searched; concurrent callers
    /// asking the same search while it is not cached share one search.
    ///
    /// # Errors
    /// The database error (shared with the callers that waited for the same search).
    pub async fn search(
        &self,
        pool: &PgPool,
        query: &SearchQuery,
        limit: i64,
    ) -> Result<Arc<Vec<SearchHit>>, Arc<sqlx::Error>> {
        let key = (
            query.text.trim().to_string(),
            query.status.map(RequestStatus::as_str),
            query.media_type.map(MediaType::as_str),
            query.requested_by.clone(),
            limit,
        );
        let read = || async {
            search(pool, query, limit)
                .await
                .map(|hits| Some(Arc::new(hits)))
        };
        Ok(self
            .answers
            .get_or_read(key, read)
            .await?
            .unwrap_or_default())
    }
}

/// One request's search row, if the read model has it.
///
/// # Errors
/// The database error.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<SearchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, version, status, media_type, title, year, requested_by, requester,
            created_at, updated_at, last_position
         FROM request_search WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The username the read model knows for user `id`.
///
/// # Errors
/// The database error.
pub async fn username<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT username FROM request_search_users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::{graded_words, split_years};

    #[test]
    fn years_are_split_off_the_words() {
        assert_eq!(
            split_years("the matrix 1999"),
            ("the matrix".into(), vec![1999])
        );
        assert_eq!(split_years("Matrix (2003)"), ("Matrix".into(), vec![2003]));
        assert_eq!(split_years("1999"), (String::new(), vec![1999]));
        assert_eq!(
            split_years("apollo 13 12345"),
            ("apollo 13 12345".into(), vec![])
        );
        assert_eq!(split_years("２０１９ x"), ("２０１９ x".into(), vec![]));
    }

    #[test]
    fn closeness_grades_every_word_but_the_web_search_operators() {
        assert_eq!(graded_words("the matrix 1999"), "the matrix 1999");
        assert_eq!(graded_words("matrix -reloaded"), "matrix");
        assert_eq!(graded_words("alien OR predator"), "alien predator");
        assert_eq!(graded_words("spider-man  - home"), "spider-man home");
        assert_eq!(graded_words("-only"), "");
    }
}
