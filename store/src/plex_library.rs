//! The Plex library read model (`plex_library`, `plex_library_seasons`) and the Plex sync
//! worker's state (`plex_sync_state`, `plex_sync_progress`); issue 11, docs/architecture.md
//! "Plex library".
//!
//! What Plex has is the outside world's state, not MediaNest's: no event feeds these tables.
//! The sync worker (`medianest_workers::plex_sync`) writes them page by page from the PMS
//! library routes; the submit rule "already available", the catalogue's `availability` and
//! the sync's own request updates read them through [`find`] and [`find_many`].
//!
//! Invariants:
//! - only movies and shows with a `tmdb://` or `tvdb://` guid are kept (a row has at least
//!   one of the two ids); their seasons are kept only while the show is;
//! - every write of a full pass stamps `last_seen_pass`; at the end of a section's pass the
//!   rows of that section it did not see ([`unseen`]) are checked with the server one by one
//!   and deleted only when it no longer has them ([`remove`]; else [`mark_seen`]), which is
//!   how removals from Plex are noticed without taking an item that paging skipped for
//!   removed;
//! - writes are set-based (one statement per page), so a page of 200 items is one round trip.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use medianest_domain::media_request::MediaType;
use sqlx::PgPool;

/// `(media type, TMDB id)` keys as the two arrays a `unnest($1::text[], $2::bigint[])` join
/// takes.
pub fn key_columns(keys: &[(MediaType, i64)]) -> (Vec<String>, Vec<i64>) {
    keys.iter()
        .map(|(media_type, tmdb_id)| (media_type.as_str().to_string(), *tmdb_id))
        .unzip()
}

/// One movie or show as the sync writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexItemRow {
    /// Plex's `ratingKey` (unique on the server).
    pub rating_key: String,
    /// The library section's `key`.
    pub section_key: String,
    /// Movie or show.
    pub media_type: MediaType,
    /// From the `tmdb://<id>` guid.
    pub tmdb_id: Option<i64>,
    /// From the `tvdb://<id>` guid.
    pub tvdb_id: Option<i64>,
    /// Plex's title.
    pub title: String,
    /// Plex's year.
    pub year: Option<i32>,
    /// Available in HD: a non-4K medium, outside a section marked 4K (shows: outside such a
    /// section).
    pub has_hd: bool,
    /// Available in 4K: a medium whose `videoResolution` is `4k`, or any item of a section
    /// marked 4K.
    pub has_4k: bool,
    /// Plex's `addedAt`.
    pub added_at: Option<DateTime<Utc>>,
}

/// One season of a show as the sync writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexSeasonRow {
    /// The season's `ratingKey`.
    pub rating_key: String,
    /// The show's `ratingKey` (`parentRatingKey`).
    pub show_rating_key: String,
    /// The season number (`index`; 0 is Specials).
    pub season_number: i32,
    /// Episodes present (`leafCount`).
    pub episodes: i32,
}

/// Writes (inserts or updates) `items`, stamping them with `pass`. One statement.
///
/// # Errors
/// The database error.
pub async fn upsert_items(
    pool: &PgPool,
    items: &[PlexItemRow],
    pass: i64,
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&PlexItemRow) -> String| items.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO plex_library (rating_key, section_key, media_type, tmdb_id, tvdb_id, title,
                                   year, has_hd, has_4k, added_at, last_seen_pass, synced_at)
         SELECT r, s, m, t, v, ti, y, hd, uhd, a, $11, now()
           FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
                       $7::int[], $8::bool[], $9::bool[], $10::timestamptz[])
                AS u(r, s, m, t, v, ti, y, hd, uhd, a)
         ON CONFLICT (rating_key) DO UPDATE SET
             section_key = excluded.section_key, media_type = excluded.media_type,
             tmdb_id = excluded.tmdb_id, tvdb_id = excluded.tvdb_id, title = excluded.title,
             year = excluded.year, has_hd = excluded.has_hd, has_4k = excluded.has_4k,
             added_at = excluded.added_at,
             last_seen_pass = GREATEST(plex_library.last_seen_pass, excluded.last_seen_pass),
             synced_at = now()",
    )
    .bind(column(|i| i.rating_key.clone()))
    .bind(column(|i| i.section_key.clone()))
    .bind(column(|i| i.media_type.as_str().to_string()))
    .bind(items.iter().map(|i| i.tmdb_id).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.tvdb_id).collect::<Vec<_>>())
    .bind(column(|i| i.title.clone()))
    .bind(items.iter().map(|i| i.year).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.has_hd).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.has_4k).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.added_at).collect::<Vec<_>>())
    .bind(pass)
    .execute(pool)
    .await?;
    Ok(())
}

/// Writes `seasons` whose show is in the library (others are skipped: their show had no
/// usable guid), stamping them with `pass`. Answers the ratingKeys of the shows touched.
///
/// # Errors
/// The database error.
pub async fn upsert_seasons(
    pool: &PgPool,
    seasons: &[PlexSeasonRow],
    pass: i64,
) -> Result<Vec<String>, sqlx::Error> {
    if seasons.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "WITH written AS (
           INSERT INTO plex_library_seasons (rating_key, show_rating_key, season_number, episodes,
                                             last_seen_pass)
           SELECT u.r, u.s, u.n, u.e, $5
             FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS u(r, s, n, e)
            WHERE EXISTS (SELECT 1 FROM plex_library l WHERE l.rating_key = u.s)
           ON CONFLICT (rating_key) DO UPDATE SET
               show_rating_key = excluded.show_rating_key,
               season_number = excluded.season_number, episodes = excluded.episodes,
               last_seen_pass = GREATEST(plex_library_seasons.last_seen_pass,
                                         excluded.last_seen_pass)
           RETURNING show_rating_key)
         SELECT DISTINCT show_rating_key FROM written",
    )
    .bind(
        seasons
            .iter()
            .map(|s| s.rating_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        seasons
            .iter()
            .map(|s| s.show_rating_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(seasons.iter().map(|s| s.season_number).collect::<Vec<_>>())
    .bind(seasons.iter().map(|s| s.episodes).collect::<Vec<_>>())
    .bind(pass)
    .fetch_all(pool)
    .await
}

/// The media (type and TMDB id) of the shows with these ratingKeys.
///
/// # Errors
/// The database error.
pub async fn media_of(
    pool: &PgPool,
    rating_keys: &[String],
) -> Result<Vec<(MediaType, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT DISTINCT media_type, tmdb_id FROM plex_library
          WHERE rating_key = ANY($1) AND tmdb_id IS NOT NULL",
    )
    .bind(rating_keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(media_type, tmdb_id)| Some((media_type.parse().ok()?, tmdb_id)))
        .collect())
}

/// Up to `limit` ratingKeys of what full pass `pass` has not seen (yet) in section
/// `section_key`: movies and shows, then seasons of the section's shows. Candidates for
/// removal, to be confirmed with the server ([`remove`] or [`mark_seen`]).
///
/// # Errors
/// The database error.
pub async fn unseen(
    pool: &PgPool,
    section_key: &str,
    pass: i64,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "(SELECT rating_key FROM plex_library
           WHERE section_key = $1 AND last_seen_pass < $2 ORDER BY rating_key LIMIT $3)
         UNION ALL
         (SELECT s.rating_key FROM plex_library_seasons s
            JOIN plex_library l ON l.rating_key = s.show_rating_key
           WHERE l.section_key = $1 AND l.last_seen_pass >= $2 AND s.last_seen_pass < $2
           ORDER BY s.rating_key LIMIT $3)
         LIMIT $3",
    )
    .bind(section_key)
    .bind(pass)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes the items and seasons with these ratingKeys (a show's seasons go with it);
/// answers how many rows went.
///
/// # Errors
/// The database error.
pub async fn remove(pool: &PgPool, rating_keys: &[String]) -> Result<u64, sqlx::Error> {
    if rating_keys.is_empty() {
        return Ok(0);
    }
    let seasons = sqlx::query("DELETE FROM plex_library_seasons WHERE rating_key = ANY($1)")
        .bind(rating_keys)
        .execute(pool)
        .await?
        .rows_affected();
    let items = sqlx::query("DELETE FROM plex_library WHERE rating_key = ANY($1)")
        .bind(rating_keys)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(items + seasons)
}

/// Stamps the items and seasons with these ratingKeys as seen by full pass `pass` (the
/// server still has them, though the pass's pages missed them).
///
/// # Errors
/// The database error.
pub async fn mark_seen(
    pool: &PgPool,
    rating_keys: &[String],
    pass: i64,
) -> Result<(), sqlx::Error> {
    for table in ["plex_library", "plex_library_seasons"] {
        sqlx::query(&format!(
            "UPDATE {table} SET last_seen_pass = GREATEST(last_seen_pass, $2) WHERE rating_key = ANY($1)"
        ))
        .bind(rating_keys)
        .bind(pass)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Deletes the rows of sections that are no longer synced (gone from Plex, or no longer a
/// movie or show section).
///
/// # Errors
/// The database error.
pub async fn remove_sections_except(
    pool: &PgPool,
    section_keys: &[String],
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM plex_library WHERE NOT (section_key = ANY($1))")
            .bind(section_keys)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Where Plex has one media in one 4K-ness.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Presence {
    /// The ratingKey of one Plex item holding it (the first by ratingKey when several do).
    pub rating_key: String,
    /// That item's title in Plex.
    pub title: String,
    /// Shows: the season numbers present over all items of the show, sorted; movies: empty.
    pub seasons: Vec<u32>,
}

/// What Plex has of one media: HD and 4K separately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InPlex {
    /// The HD version.
    pub hd: Option<Presence>,
    /// The 4K version.
    pub uhd: Option<Presence>,
}

impl InPlex {
    /// The presence for a request of this 4K-ness.
    pub fn for_4k(&self, is_4k: bool) -> Option<&Presence> {
        if is_4k {
            self.uhd.as_ref()
        } else {
            self.hd.as_ref()
        }
    }
}

/// One Plex item of a media with its seasons: media type, TMDB id, ratingKey, title, HD, 4K,
/// season numbers.
pub(crate) type PresenceRow = (String, i64, String, String, bool, bool, Vec<i32>);

/// The presence query: one [`PresenceRow`] per Plex item of the keys in relation `keys`
/// (`media_type text, tmdb_id bigint`), which the statement embedding it defines
/// ([`find_many`] from arrays; [`crate::media_requests`] from one key, beside a submission's
/// reservation).
pub(crate) const PRESENCE_SQL: &str =
    "SELECT l.media_type, l.tmdb_id, l.rating_key, l.title, l.has_hd, l.has_4k,
            COALESCE(array_agg(s.season_number ORDER BY s.season_number)
                       FILTER (WHERE s.season_number IS NOT NULL), '{}') AS seasons
       FROM keys AS k
       JOIN plex_library l ON l.media_type = k.media_type AND l.tmdb_id = k.tmdb_id
       LEFT JOIN plex_library_seasons s ON s.show_rating_key = l.rating_key
      GROUP BY l.media_type, l.tmdb_id, l.rating_key, l.title, l.has_hd, l.has_4k
      ORDER BY l.rating_key";

/// What Plex has of `(media_type, tmdb_id)`.
///
/// # Errors
/// The database error.
pub async fn find<'e>(
    db: impl sqlx::PgExecutor<'e>,
    media_type: MediaType,
    tmdb_id: i64,
) -> Result<InPlex, sqlx::Error> {
    Ok(find_many(db, &[(media_type, tmdb_id)])
        .await?
        .remove(&(media_type, tmdb_id))
        .unwrap_or_default())
}

/// What Plex has of each of `keys` (media type, TMDB id); keys Plex has nothing of are
/// absent from the answer. One query.
///
/// # Errors
/// The database error.
pub async fn find_many<'e>(
    db: impl sqlx::PgExecutor<'e>,
    keys: &[(MediaType, i64)],
) -> Result<HashMap<(MediaType, i64), InPlex>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (types, ids) = key_columns(keys);
    let rows: Vec<PresenceRow> = sqlx::query_as(&format!(
        "WITH keys AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS k(media_type, tmdb_id))
         {PRESENCE_SQL}"
    ))
    .bind(types)
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(in_plex(rows))
}

/// Groups presence rows by key: an item with HD and 4K files counts for both, and a key's
/// items of one 4K-ness merge their seasons (a show split over two library items).
pub(crate) fn in_plex(rows: Vec<PresenceRow>) -> HashMap<(MediaType, i64), InPlex> {
    let mut answer: HashMap<(MediaType, i64), InPlex> = HashMap::new();
    for (media_type, tmdb_id, rating_key, title, has_hd, has_4k, seasons) in rows {
        let Ok(media_type) = media_type.parse::<MediaType>() else {
            continue;
        };
        let seasons: Vec<u32> = seasons
            .into_iter()
            .filter_map(|s| u32::try_from(s).ok())
            .collect();
        let entry = answer.entry((media_type, tmdb_id)).or_default();
        for (wanted, slot) in [(has_hd, &mut entry.hd), (has_4k, &mut entry.uhd)] {
            if !wanted {
                continue;
            }
            match slot {
                Some(presence) => {
                    presence.seasons.extend(&seasons);
                    presence.seasons.sort_unstable();
                    presence.seasons.dedup();
                }
                None => {
                    *slot = Some(Presence {
                        rating_key: rating_key.clone(),
                        title: title.clone(),
                        seasons: seasons.clone(),
                    })
                }
            }
        }
    }
    answer
}

/// How many movies and shows the library read model holds.
///
/// # Errors
/// The database error.
pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM plex_library")
        .fetch_one(pool)
        .await
}

/// The sync worker's state row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncState {
    /// The number of the current (or last) full pass; 0 before the first.
    pub pass: i64,
    /// Whether a full pass is under way (a restart resumes it).
    pub full_running: bool,
    /// When the current or last full pass began.
    pub full_started_at: Option<DateTime<Utc>>,
    /// When the last full pass ended.
    pub full_finished_at: Option<DateTime<Utc>>,
    /// When the last recently-added pass began (its high-water mark).
    pub recent_started_at: Option<DateTime<Utc>>,
    /// When the last recently-added pass ended.
    pub recent_finished_at: Option<DateTime<Utc>>,
    /// When an admin last asked for a full pass.
    pub full_requested_at: Option<DateTime<Utc>>,
    /// When the Plex webhook last asked for a recently-added pass.
    pub recent_requested_at: Option<DateTime<Utc>>,
    /// The last pass's error, if it failed.
    pub last_error: Option<String>,
}

/// Reads the sync state.
///
/// # Errors
/// The database error.
pub async fn sync_state(pool: &PgPool) -> Result<SyncState, sqlx::Error> {
    sqlx::query_as(
        "SELECT pass, full_running, full_started_at, full_finished_at, recent_started_at,
                recent_finished_at, full_requested_at, recent_requested_at, last_error
           FROM plex_sync_state",
    )
    .fetch_one(pool)
    .await
}

/// Asks the sync worker for a full pass (an admin's `POST /api/v1/admin/plex/sync`); answers
/// the time of the request. The worker starts it at its next tick.
///
/// # Errors
/// The database error.
pub async fn request_full_pass(pool: &PgPool) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE plex_sync_state SET full_requested_at = now() RETURNING full_requested_at",
    )
    .fetch_one(pool)
    .await
}

/// Asks the sync worker for a recently-added pass (Plex's `library.new` webhook).
///
/// # Errors
/// The database error.
pub async fn request_recent_pass(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE plex_sync_state SET recent_requested_at = now()")
        .execute(pool)
        .await?;
    Ok(())
}

/// Begins full pass `previous + 1` (or resumes the one under way): answers its number.
///
/// # Errors
/// The database error.
pub async fn begin_full_pass(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE plex_sync_state
            SET pass = CASE WHEN full_running THEN pass ELSE pass + 1 END,
                full_started_at = CASE WHEN full_running THEN full_started_at ELSE now() END,
                full_running = true
         RETURNING pass",
    )
    .fetch_one(pool)
    .await
}

/// Ends full pass `pass` (`error`: why it stopped short; it is then resumed next time).
///
/// # Errors
/// The database error.
pub async fn end_full_pass(
    pool: &PgPool,
    pass: i64,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE plex_sync_state
            SET full_running = ($2::text IS NOT NULL),
                full_finished_at = CASE WHEN $2::text IS NULL THEN now() ELSE full_finished_at END,
                last_error = $2
          WHERE pass = $1",
    )
    .bind(pass)
    .bind(error)
    .execute(pool)
    .await?;
    if error.is_none() {
        sqlx::query("DELETE FROM plex_sync_progress WHERE pass <= $1")
            .bind(pass)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Records that a recently-added pass began at `started_at` (`finished`: and ended well).
///
/// # Errors
/// The database error.
pub async fn record_recent_pass(
    pool: &PgPool,
    started_at: DateTime<Utc>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE plex_sync_state
            SET recent_started_at = CASE WHEN $2::text IS NULL THEN $1 ELSE recent_started_at END,
                recent_finished_at = CASE WHEN $2::text IS NULL THEN now() ELSE recent_finished_at END,
                last_error = $2",
    )
    .bind(started_at)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Where full pass `pass` stands in one section and item kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Progress {
    /// The next `X-Plex-Container-Start`.
    pub next_start: i64,
    /// Whether this kind is done.
    pub done: bool,
}

/// Reads the progress of `pass` in `(section_key, kind)` (zero when not begun).
///
/// # Errors
/// The database error.
pub async fn progress(
    pool: &PgPool,
    pass: i64,
    section_key: &str,
    kind: i16,
) -> Result<Progress, sqlx::Error> {
    Ok(sqlx::query_as(
        "SELECT next_start, done FROM plex_sync_progress
          WHERE pass = $1 AND section_key = $2 AND kind = $3",
    )
    .bind(pass)
    .bind(section_key)
    .bind(kind)
    .fetch_optional(pool)
    .await?
    .unwrap_or_default())
}

/// Saves the progress of `pass` in `(section_key, kind)`.
///
/// # Errors
/// The database error.
pub async fn save_progress(
    pool: &PgPool,
    pass: i64,
    section_key: &str,
    kind: i16,
    progress: &Progress,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO plex_sync_progress (pass, section_key, kind, next_start, done)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (pass, section_key, kind) DO UPDATE SET
             next_start = excluded.next_start, done = excluded.done",
    )
    .bind(pass)
    .bind(section_key)
    .bind(kind)
    .bind(progress.next_start)
    .bind(progress.done)
    .execute(pool)
    .await?;
    Ok(())
}
