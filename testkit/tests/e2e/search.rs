//! Request search (issue 5, docs/design.md §5, §7): `GET /api/v1/search` over the
//! `request_search` read model, against real PostgreSQL and NATS JetStream — typo-tolerant
//! (full text, pg_trgm, edit distance) and ranked by word closeness first (issue 11: a
//! one-letter typo of a whole word outranks a title that only shares trigrams), by title,
//! year and requester, with the request list's visibility, read-your-writes through
//! `min_position`, 400 for bad input, and a projection that redelivered events leave
//! unchanged.
//!
//! Apps run without the Overseerr simulator, so no saga writes events (or moves a request
//! on) while a test counts them.

use std::sync::Arc;
use std::time::Duration;

use medianest_domain::media_request::{
    Media, MediaRequestCommand, MediaRequestServices, MediaType, TmdbId,
};
use medianest_domain::user_account::UserAccountCommand;
use medianest_domain::{Actor, RequestId, UserId};
use medianest_nats::{FeedEvent, LogFeed};
use medianest_projections::search::{self, SearchProjection, SearchRow};
use medianest_projections::{Projection, ProjectionRunner};
use medianest_store::accounts::UserAccounts;
use medianest_store::media_requests::MediaRequests;
use medianest_store::{checkpoint, log, Cursor, EventMetadata};
use medianest_testkit::app::{
    eventually, fresh_database, password_of, test_user, TestApp, TestOptions, TestUser,
    PMS_MACHINE_ID,
};
use medianest_testkit::plex_sim::SimAccount;
use medianest_testkit::problem::assert_problem;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const SEARCH: &str = "/api/v1/search";
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An app whose Overseerr sagas are idle: nothing but the test writes events.
async fn spawn_quiet() -> TestApp {
    TestApp::spawn_with(TestOptions {
        overseerr: false,
        ..TestOptions::default()
    })
    .await
}

/// Submits a movie request as `who`, expecting 202; answers `id`, `version`, `position`.
async fn submit(app: &TestApp, who: &TestUser, tmdb_id: u32, title: &str, year: u16) -> Value {
    let response = app
        .request_as(&who.token, Method::POST, "/api/v1/requests")
        .json(&json!({
            "media_type": "movie", "tmdb_id": tmdb_id, "title": title, "year": year,
            "is_4k": false, "note": null
        }))
        .send()
        .await
        .expect("POST reaches the app");
    assert_eq!(response.status(), 202, "submit {title} as {}", who.username);
    response.json().await.expect("a JSON answer")
}

/// Submits several movies as `who`; answers their ids and the largest position.
async fn submit_all(
    app: &TestApp,
    who: &TestUser,
    movies: &[(u32, &str, u16)],
) -> (Vec<String>, i64) {
    let mut ids = Vec::new();
    let mut position = 0;
    for (tmdb_id, title, year) in movies {
        let answer = submit(app, who, *tmdb_id, title, *year).await;
        ids.push(answer["id"].as_str().expect("an id").to_string());
        position = position.max(answer["position"].as_i64().expect("a position"));
    }
    (ids, position)
}

/// `GET /api/v1/search` as `token` with `params`.
async fn search_response(app: &TestApp, token: &str, params: &[(&str, &str)]) -> reqwest::Response {
    app.request_as(token, Method::GET, SEARCH)
        .query(params)
        .send()
        .await
        .expect("GET reaches the app")
}

/// `GET /api/v1/search` as `who`, expecting 200; answers the body.
async fn search_as(app: &TestApp, who: &TestUser, params: &[(&str, &str)]) -> Value {
    let response = search_response(app, &who.token, params).await;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "search {params:?} as {}: {body}", who.username);
    serde_json::from_str(&body).expect("a JSON answer")
}

/// The titles of a search answer, in order.
fn titles(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["title"].as_str().expect("a title").to_string())
        .collect()
}

/// The ids of a search answer, in order.
fn ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["id"].as_str().expect("an id").to_string())
        .collect()
}

/// The result titled `title`.
fn hit<'a>(answer: &'a Value, title: &str) -> &'a Value {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|hit| hit["title"] == title)
        .unwrap_or_else(|| panic!("{title} in {answer}"))
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

const MATRIX_AND_FRIENDS: [(u32, &str, u16); 6] = [
    (603, "The Matrix", 1999),
    (604, "The Matrix Reloaded", 2003),
    (605, "The Matrix Revolutions", 2003),
    (624860, "Matrix", 2021),
    (550, "Fight Club", 1999),
    (78, "Blade Runner", 1982),
];

// ---------------------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn matrx_finds_the_matrix_and_the_exact_title_ranks_first() {
    let app = spawn_quiet().await;
    let (_, position) = submit_all(&app, &app.admin, &MATRIX_AND_FRIENDS).await;
    let position = position.to_string();

    // A typo: every Matrix, nothing else.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "matrx"), ("min_position", &position)],
    )
    .await;
    assert_eq!(answer["query"], "matrx");
    assert_eq!(
        sorted(titles(&answer)),
        [
            "Matrix",
            "The Matrix",
            "The Matrix Reloaded",
            "The Matrix Revolutions"
        ]
    );
    let scores: Vec<f64> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["score"].as_f64().expect("a score"))
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {answer}"
    );

    // The exact title first, case and spacing aside.
    for q in ["the matrix", "The Matrix", "  THE   matrix "] {
        let answer = search_as(&app, &app.admin, &[("q", q)]).await;
        let titles = titles(&answer);
        assert_eq!(titles[0], "The Matrix", "{q}: {answer}");
        assert!(
            hit(&answer, "The Matrix")["score"].as_f64()
                > hit(&answer, "The Matrix Reloaded")["score"].as_f64(),
            "{q}: {answer}"
        );
        assert!(!titles.contains(&"Fight Club".to_string()), "{q}: {answer}");
        assert_eq!(answer["query"], q.trim());
    }
    let answer = search_as(&app, &app.admin, &[("q", "matrix")]).await;
    assert_eq!(titles(&answer)[0], "Matrix", "{answer}");
    assert_eq!(titles(&answer).len(), 4, "{answer}");
    // A wrong letter rather than a missing one.
    let answer = search_as(&app, &app.admin, &[("q", "matrex")]).await;
    assert_eq!(titles(&answer).len(), 4, "{answer}");
    // A typo in a longer title.
    let answer = search_as(&app, &app.admin, &[("q", "blade runer")]).await;
    assert_eq!(titles(&answer), ["Blade Runner"]);

    // The shape of a result.
    let answer = search_as(&app, &app.admin, &[("q", "fight club")]).await;
    let fight_club = &answer["results"][0];
    let mut keys: Vec<&str> = fight_club
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "media_type",
            "position",
            "requested_by",
            "requester",
            "score",
            "status",
            "title",
            "year"
        ]
    );
    assert_eq!(fight_club["title"], "Fight Club");
    assert_eq!(fight_club["year"], 1999);
    assert_eq!(fight_club["media_type"], "movie");
    assert_eq!(fight_club["status"], "pending");
    assert_eq!(fight_club["requested_by"], app.admin.id.to_string());
    assert_eq!(fight_club["requester"], "admin");
    assert!(fight_club["position"].as_i64().is_some_and(|p| p > 0));
    assert!(fight_club["created_at"].is_string());

    // limit, and filters.
    let answer = search_as(&app, &app.admin, &[("q", "matrx"), ("limit", "2")]).await;
    assert_eq!(titles(&answer).len(), 2);
    let answer = search_as(&app, &app.admin, &[("q", "matrix"), ("media_type", "tv")]).await;
    assert_eq!(titles(&answer), Vec::<String>::new());
    let reloaded =
        ids(&search_as(&app, &app.admin, &[("q", "the matrix reloaded")]).await)[0].clone();
    let approved = app
        .post_empty(&format!("/api/v1/requests/{reloaded}/approve"))
        .await;
    assert_eq!(approved.status(), 200);
    let approved: Value = approved.json().await.expect("json");
    let answer = search_as(
        &app,
        &app.admin,
        &[
            ("q", "matrix"),
            ("status", "approved"),
            ("min_position", &approved["position"].to_string()),
        ],
    )
    .await;
    assert_eq!(titles(&answer), ["The Matrix Reloaded"]);
    assert_eq!(answer["results"][0]["status"], "approved");
    let answer = search_as(&app, &app.admin, &[("q", "matrix"), ("status", "pending")]).await;
    assert_eq!(titles(&answer).len(), 3, "{answer}");

    // Nothing like it: an empty list, not an error.
    let answer = search_as(&app, &app.admin, &[("q", "zzzzqqq")]).await;
    assert_eq!(answer["results"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_year_in_the_query_matches_and_boosts() {
    let app = spawn_quiet().await;
    let (_, position) = submit_all(&app, &app.admin, &MATRIX_AND_FRIENDS).await;
    let position = position.to_string();

    // Only a year: the requests of that year.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "1999"), ("min_position", &position)],
    )
    .await;
    assert_eq!(sorted(titles(&answer)), ["Fight Club", "The Matrix"]);
    let answer = search_as(&app, &app.admin, &[("q", "2003")]).await;
    assert_eq!(
        sorted(titles(&answer)),
        ["The Matrix Reloaded", "The Matrix Revolutions"]
    );

    // Words and a year: the year decides between matching titles.
    let answer = search_as(&app, &app.admin, &[("q", "matrix 2003")]).await;
    let found = titles(&answer);
    assert_eq!(
        sorted(found[..2].to_vec()),
        ["The Matrix Reloaded", "The Matrix Revolutions"],
        "{answer}"
    );
    assert!(!found.contains(&"Fight Club".to_string()), "{answer}");
    let answer = search_as(&app, &app.admin, &[("q", "matrix 2021")]).await;
    assert_eq!(titles(&answer)[0], "Matrix");
    let answer = search_as(&app, &app.admin, &[("q", "the matrix (1999)")]).await;
    assert_eq!(titles(&answer)[0], "The Matrix");
    let answer = search_as(&app, &app.admin, &[("q", "matrx 1999")]).await;
    assert_eq!(titles(&answer)[0], "The Matrix");
    app.stop().await;
}

#[tokio::test]
async fn a_one_letter_typo_of_a_whole_word_outranks_a_title_sharing_more_trigrams() {
    let app = spawn_quiet().await;
    let (_, position) = submit_all(
        &app,
        &app.admin,
        &[
            (603, "The Matrix", 1999),
            (604, "The Matrix Reloaded", 2003),
            (40_000, "Matrimony", 2001),
            (550, "Fight Club", 1999),
            (78, "Blade Runner", 1982),
        ],
    )
    .await;

    // "matrx" is one letter off "matrix"; "Matrimony" shares as many trigrams, in a shorter
    // title, and is still found, after every Matrix.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "matrx"), ("min_position", &position.to_string())],
    )
    .await;
    assert_eq!(
        titles(&answer),
        ["The Matrix", "The Matrix Reloaded", "Matrimony"],
        "{answer}"
    );
    // A wrong letter, and two neighbouring letters swapped, count as one typo too.
    for q in ["matrex", "mtarix"] {
        let answer = search_as(&app, &app.admin, &[("q", q)]).await;
        assert_eq!(
            titles(&answer)[..2],
            ["The Matrix", "The Matrix Reloaded"],
            "{q}: {answer}"
        );
    }
    // The integer part of the score is the closeness: one typo of one word is 2, a whole
    // word 4, a prefix 3.
    let score = |answer: &Value, title: &str| hit(answer, title)["score"].as_f64();
    assert_eq!(score(&answer, "The Matrix").map(f64::floor), Some(2.0));
    assert_eq!(score(&answer, "Matrimony").map(f64::floor), Some(0.0));
    let answer = search_as(&app, &app.admin, &[("q", "matrix")]).await;
    assert_eq!(score(&answer, "The Matrix").map(f64::floor), Some(4.0));
    let answer = search_as(&app, &app.admin, &[("q", "matri")]).await;
    assert_eq!(
        titles(&answer)[..2],
        ["Matrimony", "The Matrix"],
        "{answer}"
    );
    assert_eq!(score(&answer, "The Matrix").map(f64::floor), Some(3.0));
    app.stop().await;
}

#[tokio::test]
async fn a_two_word_query_with_a_typo_in_one_word_ranks_the_title_with_both_words_first() {
    let app = spawn_quiet().await;
    let (_, position) = submit_all(
        &app,
        &app.admin,
        &[
            (945_961, "Alien: Romulus", 2024),
            (348, "Alien", 1979),
            (40_001, "Romulus", 2017),
            (40_002, "Romulus and Remus", 1961),
            (78, "Blade Runner", 1982),
        ],
    )
    .await;
    let position = position.to_string();

    // One word exact, the other one typo off: the title with both words first, then the
    // titles with the exact word.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "alein romulus"), ("min_position", &position)],
    )
    .await;
    assert_eq!(
        titles(&answer),
        ["Alien: Romulus", "Romulus", "Romulus and Remus"],
        "{answer}"
    );
    let answer = search_as(&app, &app.admin, &[("q", "alien romulos")]).await;
    assert_eq!(titles(&answer)[0], "Alien: Romulus", "{answer}");
    assert!(
        !titles(&answer).contains(&"Blade Runner".to_string()),
        "{answer}"
    );
    let answer = search_as(&app, &app.admin, &[("q", "blade runer")]).await;
    assert_eq!(titles(&answer), ["Blade Runner"]);
    app.stop().await;
}

#[tokio::test]
async fn a_typo_in_a_requesters_name_ranks_their_requests_above_a_look_alike_title() {
    let app = spawn_quiet().await;
    let morpheus = app.sign_in_user("morpheus").await;
    let trinity = app.sign_in_user("trinity").await;
    let (dark_city, _) = submit_all(&app, &morpheus, &[(2666, "Dark City", 1998)]).await;
    let (_, position) = submit_all(&app, &trinity, &[(40_003, "Morphine", 2008)]).await;

    // "morpheos" is one letter off the requester "morpheus"; "Morphine" only shares a
    // beginning with it.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "morpheos"), ("min_position", &position.to_string())],
    )
    .await;
    assert_eq!(titles(&answer), ["Dark City", "Morphine"], "{answer}");
    assert_eq!(answer["results"][0]["requester"], "morpheus");
    // A requester typo and a title word together.
    let answer = search_as(&app, &app.admin, &[("q", "morpheos dark")]).await;
    assert_eq!(ids(&answer), dark_city);
    // Visibility holds: trinity does not find morpheus's request.
    let answer = search_as(&app, &trinity, &[("q", "morpheos")]).await;
    assert_eq!(titles(&answer), ["Morphine"]);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Requester and visibility
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn requester_names_are_searchable_and_users_find_only_their_own_requests() {
    let app = spawn_quiet().await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let (alice_ids, _) =
        submit_all(&app, &alice, &[(348, "Alien", 1979), (679, "Aliens", 1986)]).await;
    let (bob_ids, position) = submit_all(
        &app,
        &bob,
        &[(945961, "Alien: Romulus", 2024), (78, "Blade Runner", 1982)],
    )
    .await;
    let position = position.to_string();

    // The admin finds everyone's requests, by title and by requester.
    let answer = search_as(
        &app,
        &app.admin,
        &[("q", "alien"), ("min_position", &position)],
    )
    .await;
    assert_eq!(
        sorted(ids(&answer)),
        sorted(vec![
            alice_ids[0].clone(),
            alice_ids[1].clone(),
            bob_ids[0].clone()
        ])
    );
    let answer = search_as(&app, &app.admin, &[("q", "alice")]).await;
    assert_eq!(sorted(ids(&answer)), sorted(alice_ids.clone()));
    for result in answer["results"].as_array().expect("results") {
        assert_eq!(result["requester"], "alice");
        assert_eq!(result["requested_by"], alice.id.to_string());
    }
    let answer = search_as(&app, &app.admin, &[("q", "bob")]).await;
    assert_eq!(sorted(ids(&answer)), sorted(bob_ids.clone()));
    // A title and a requester together.
    let answer = search_as(&app, &app.admin, &[("q", "bob alien")]).await;
    assert_eq!(ids(&answer)[0], bob_ids[0]);

    // Users find only their own.
    let answer = search_as(&app, &alice, &[("q", "alien")]).await;
    assert_eq!(sorted(ids(&answer)), sorted(alice_ids.clone()));
    let answer = search_as(&app, &alice, &[("q", "blade runner")]).await;
    assert_eq!(answer["results"], json!([]));
    let answer = search_as(&app, &alice, &[("q", "bob")]).await;
    assert_eq!(answer["results"], json!([]));
    let answer = search_as(&app, &bob, &[("q", "alien")]).await;
    assert_eq!(ids(&answer), [bob_ids[0].clone()]);
    let answer = search_as(&app, &bob, &[("q", "1979")]).await;
    assert_eq!(answer["results"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn search_rows_follow_a_username_change() {
    let app = spawn_quiet().await;
    // A Plex member; signing in again after a rename at plex.tv updates the profile.
    let account = SimAccount::new(4242, "neo");
    app.plex_tv().add_account(account.clone());
    app.plex_tv()
        .grant_server(account.id, PMS_MACHINE_ID, false);
    let response = app.plex_sign_in(&account).await;
    assert_eq!(response.status(), 200);
    let neo = test_user(response.json().await.expect("a JSON answer"));
    let submitted = submit(&app, &neo, 2666, "Dark City", 1998).await;
    let id = submitted["id"].as_str().expect("an id").to_string();
    let answer = search_as(
        &app,
        &app.admin,
        &[
            ("q", "neo"),
            ("min_position", &submitted["position"].to_string()),
        ],
    )
    .await;
    assert_eq!(ids(&answer), std::slice::from_ref(&id));
    assert_eq!(answer["results"][0]["requester"], "neo");

    let renamed = SimAccount::new(4242, "thomas");
    let response = app.plex_sign_in(&renamed).await;
    assert_eq!(response.status(), 200);
    let answer = eventually("the new name in search", WAIT, || async {
        let response = search_response(&app, &app.admin.token, &[("q", "thomas")]).await;
        let answer: Value = response.json().await.ok()?;
        (ids(&answer) == [id.clone()]).then_some(answer)
    })
    .await;
    assert_eq!(answer["results"][0]["requester"], "thomas");
    assert_eq!(answer["results"][0]["requested_by"], neo.id.to_string());
    let answer = search_as(&app, &app.admin, &[("q", "neo")]).await;
    assert_eq!(answer["results"], json!([]));
    // The vocabulary that closeness grades has the new name; the old one stays and, as
    // just seen, matches nothing.
    let words: Vec<String> = sqlx::query_scalar(
        "SELECT word FROM request_search_words
          WHERE word IN ('neo', 'thomas', 'dark', 'city', '1998') ORDER BY word",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the vocabulary");
    assert_eq!(words, ["1998", "city", "dark", "neo", "thomas"]);
    // The renamed member still finds their request by title.
    let answer = search_as(&app, &neo, &[("q", "dark city")]).await;
    assert_eq!(ids(&answer), [id]);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Read-your-writes, authentication, bad input
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn min_position_returns_the_callers_just_submitted_request() {
    let app = spawn_quiet().await;
    let carol = app.sign_in_user("carol").await;
    for (tmdb_id, title) in [(949, "Heat"), (807, "Se7en")] {
        let submitted = submit(&app, &carol, tmdb_id, title, 1995).await;
        let position = submitted["position"].to_string();
        let answer = search_as(&app, &carol, &[("q", title), ("min_position", &position)]).await;
        assert_eq!(
            ids(&answer),
            [submitted["id"].as_str().expect("an id")],
            "{answer}"
        );
    }
    // The same through the header.
    let submitted = submit(&app, &carol, 680, "Pulp Fiction", 1994).await;
    let response = app
        .request_as(&carol.token, Method::GET, SEARCH)
        .query(&[("q", "pulp fiction")])
        .header("X-Min-Position", submitted["position"].to_string())
        .send()
        .await
        .expect("GET reaches the app");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(ids(&answer), [submitted["id"].as_str().expect("an id")]);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_search_answers_from_the_cache_until_the_read_model_changes() {
    let app = spawn_quiet().await;
    let carol = app.sign_in_user("carol").await;
    let (first, position) = submit_all(&app, &carol, &[(603, "The Matrix", 1999)]).await;
    let position = position.to_string();
    search_as(
        &app,
        &carol,
        &[("q", "matrix"), ("min_position", &position)],
    )
    .await;
    let cached = search_as(&app, &carol, &[("q", "matrix")]).await;
    assert_eq!(ids(&cached), first, "{cached}");
    // The answer above is cached; a new request changes the read model, and the next
    // search without `min_position` (which would skip the cache) must already show it.
    let (second, position) = submit_all(&app, &carol, &[(604, "The Matrix Reloaded", 2003)]).await;
    let position = position.to_string();
    let fresh = search_as(
        &app,
        &carol,
        &[("q", "matrix"), ("min_position", &position)],
    )
    .await;
    assert_eq!(ids(&fresh).len(), 2, "{fresh}");
    let again = search_as(&app, &carol, &[("q", "matrix")]).await;
    assert_eq!(ids(&again), ids(&fresh), "not the stale cached answer");
    assert!(ids(&again).contains(&second[0]), "{again}");
    app.stop().await;
}

#[tokio::test]
async fn search_needs_a_session() {
    let app = spawn_quiet().await;
    let response = app
        .http
        .get(app.url(&format!("{SEARCH}?q=matrix")))
        .send()
        .await
        .expect("GET reaches the app");
    assert_problem("no token", response, 401, "unauthenticated").await;
    let response = search_response(&app, "not-a-session", &[("q", "matrix")]).await;
    assert_problem("unknown token", response, 401, "unauthenticated").await;
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_search() {
    let app = spawn_quiet().await;
    let document: Value = app.openapi_document().await;
    let operation = &document["paths"][SEARCH]["get"];
    assert!(operation.is_object(), "OpenAPI lacks GET {SEARCH}");
    let params: Vec<&str> = operation["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        params,
        ["q", "status", "media_type", "limit", "min_position"]
    );
    for status in ["200", "400", "401", "503"] {
        assert!(operation["responses"][status].is_object(), "{status}");
    }
    for schema in ["SearchResults", "SearchHit"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "OpenAPI lacks the {schema} schema"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_search_input_is_400_and_changes_nothing() {
    let app = spawn_quiet().await;
    let user = app.sign_in_user("dave").await;
    let submitted = submit(&app, &user, 603, "The Matrix", 1999).await;
    let position = submitted["position"].to_string();
    let ok = search_as(&app, &user, &[("q", "matrix"), ("min_position", &position)]).await;
    assert_eq!(titles(&ok), ["The Matrix"]);
    let events = app.event_count().await;

    let long = "a".repeat(201);
    let long_query = format!("q={long}");
    let cases: [(&str, &str); 17] = [
        ("no q", ""),
        ("empty q", "q="),
        ("whitespace q", "q=%20%20%09"),
        ("q over 200 characters", long_query.as_str()),
        ("q with a control character", "q=mat%01rix"),
        ("two q", "q=a&q=b"),
        ("unknown parameter", "q=matrix&sort=title"),
        (
            "requested_by is not a search parameter",
            "q=matrix&requested_by=x",
        ),
        ("unknown status", "q=matrix&status=lost"),
        ("unknown media type", "q=matrix&media_type=book"),
        ("limit 0", "q=matrix&limit=0"),
        ("limit 101", "q=matrix&limit=101"),
        ("limit -1", "q=matrix&limit=-1"),
        ("limit not a number", "q=matrix&limit=ten"),
        ("min_position not a number", "q=matrix&min_position=soon"),
        ("empty status", "q=matrix&status="),
        ("cursor is not a search parameter", "q=matrix&cursor=x"),
    ];
    for (case, query) in cases {
        for who in [&user, &app.admin] {
            let response = app
                .request_as(&who.token, Method::GET, &format!("{SEARCH}?{query}"))
                .send()
                .await
                .expect("GET reaches the app");
            assert_problem(case, response, 400, "malformed-request").await;
        }
    }
    // A NUL is refused before the search sees it, as in every query parameter.
    let response = app
        .request_as(&user.token, Method::GET, &format!("{SEARCH}?q=mat%00rix"))
        .send()
        .await
        .expect("GET reaches the app");
    let problem = assert_problem("q with a NUL", response, 400, "invalid-text").await;
    assert_eq!(problem.body["field"], "q", "{}", problem.body);
    let response = app
        .request_as(&user.token, Method::GET, &format!("{SEARCH}?q=matrix"))
        .header("X-Min-Position", "soon")
        .send()
        .await
        .expect("GET reaches the app");
    assert_problem(
        "X-Min-Position not a number",
        response,
        400,
        "malformed-request",
    )
    .await;

    // The limits themselves are fine.
    let at_most = "b".repeat(200);
    search_as(&app, &user, &[("q", &at_most)]).await;
    for limit in ["1", "100"] {
        search_as(&app, &user, &[("q", "matrix"), ("limit", limit)]).await;
    }
    // Punctuation only is a query without words: no results, no error.
    let answer = search_as(&app, &user, &[("q", "!!! & | -")]).await;
    assert_eq!(answer["results"], json!([]));

    assert_eq!(app.event_count().await, events, "no event was written");
    let again = search_as(&app, &user, &[("q", "matrix")]).await;
    assert_eq!(
        again["results"], ok["results"],
        "the read model is unchanged"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The projection
// ---------------------------------------------------------------------------------------

/// Every event of the log, as a feed would deliver it, once all `count` of them are behind
/// the transaction fence (server-wide: other databases' transactions may hold it back).
async fn all_events(pool: &PgPool, count: usize) -> Vec<FeedEvent> {
    eventually("the events behind the fence", WAIT, || async {
        let events: Vec<FeedEvent> = log::read_after(pool, Cursor::default(), 1000, None)
            .await
            .expect("read the log")
            .iter()
            .map(|event| FeedEvent::from_stored(event).expect("a public form"))
            .collect();
        (events.len() >= count).then_some(events)
    })
    .await
}

/// The search row of `request` and the username of `user`.
async fn snapshot(pool: &PgPool, request: RequestId, user: UserId) -> (SearchRow, Option<String>) {
    (
        search::get(pool, request.as_uuid())
            .await
            .expect("db")
            .expect("a row"),
        search::username(pool, user.as_uuid()).await.expect("db"),
    )
}

#[tokio::test]
async fn applying_an_event_twice_changes_nothing() {
    let (_, pool) = fresh_database().await;
    // alice registers, submits, an admin approves, alice is renamed.
    let alice = medianest::users::create_user(&pool, "alice", None, false, password_of("alice"))
        .await
        .expect("alice")
        .id;
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let request = RequestId::new();
    let metadata = EventMetadata::default();
    requests
        .execute(
            request,
            MediaRequestCommand::Submit {
                requested_by: Actor::user(alice),
                media: Media {
                    media_type: MediaType::Movie,
                    tmdb_id: TmdbId::new(603).expect("positive"),
                    tvdb_id: None,
                    title: "The Matrix".to_string(),
                    year: Some(1999),
                },
                seasons: None,
                is_4k: false,
                note: None,
            },
            None,
            &metadata,
        )
        .await
        .expect("submitted");
    requests
        .execute(
            request,
            MediaRequestCommand::Approve {
                by: Actor::admin(Uuid::now_v7()),
            },
            None,
            &metadata,
        )
        .await
        .expect("approved");
    UserAccounts::new(pool.clone())
        .execute(
            alice,
            UserAccountCommand::UpdateProfile {
                username: Some("alice.liddell".to_string()),
                email: None,
                avatar: None,
            },
            None,
            &metadata,
        )
        .await
        .expect("renamed");
    let events = all_events(&pool, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");

    let runner = ProjectionRunner::new(
        pool.clone(),
        Arc::new(LogFeed::new(pool.clone())),
        Arc::new(SearchProjection),
    );
    let name = runner.checkpoint_name();
    assert_eq!(name, "projection-request_search");
    for event in &events {
        runner.apply_once(&name, event).await.expect("applied");
    }
    let first = snapshot(&pool, request, alice).await;
    assert_eq!(first.0.status, "approved");
    assert_eq!(first.0.version, 2);
    assert_eq!(first.0.title, "The Matrix");
    assert_eq!(first.0.year, Some(1999));
    assert_eq!(first.0.requested_by, alice.to_string());
    assert_eq!(first.0.requester.as_deref(), Some("alice.liddell"));
    assert_eq!(first.1.as_deref(), Some("alice.liddell"));
    let checkpoint_after = checkpoint::load(&pool, &name).await.expect("checkpoint");
    assert_eq!(checkpoint_after, events[3].cursor);

    // Redelivered, in order or not: the checkpoint ignores them.
    for event in events.iter().rev().chain(events.iter()) {
        runner.apply_once(&name, event).await.expect("ignored");
    }
    assert_eq!(snapshot(&pool, request, alice).await, first);
    assert_eq!(
        checkpoint::load(&pool, &name).await.expect("checkpoint"),
        checkpoint_after
    );

    // Past the checkpoint (a replay applying the log again): the row versions ignore them,
    // and the old `registered` does not bring back the old name.
    for event in events.iter().chain(events.iter().rev()) {
        let mut tx = pool.begin().await.expect("a transaction");
        SearchProjection
            .apply(&mut tx, event)
            .await
            .expect("applied again");
        tx.commit().await.expect("committed");
    }
    assert_eq!(snapshot(&pool, request, alice).await, first);

    // The projection's rows are what search answers.
    let query = search::SearchQuery {
        text: "alice.liddel".to_string(),
        ..search::SearchQuery::default()
    };
    let hits = search::search(&pool, &query, 10).await.expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].row, first.0);
}
