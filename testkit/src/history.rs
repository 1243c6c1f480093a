//! A scripted history touching every aggregate, for tests that compare read models with a
//! replay of the log: accounts signing in and out, requests in every end state (available
//! through Overseerr, declined, cancelled, pending), a completed and scanned download and a
//! cancelled one, a role change.

use std::time::Duration;

use medianest_domain::download::{
    Container, DownloadCommand, DownloadKind, DownloadServices, Quality,
};
use medianest_domain::{Actor, DownloadId};
use medianest_store::checkpoint;
use medianest_store::downloads::Downloads;
use medianest_store::EventMetadata;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{TestApp, TestUser};

const WAIT: Duration = Duration::from_secs(30);

/// What [`scripted`] created.
#[derive(Debug)]
pub struct History {
    /// The users who took part (alice, bob).
    pub users: Vec<TestUser>,
    /// Request ids: The Matrix (available), The Matrix Reloaded (declined), Heat
    /// (cancelled), Alien (pending).
    pub requests: Vec<String>,
    /// Download ids: one completed and scanned, one cancelled.
    pub downloads: Vec<Uuid>,
}

/// `POST /api/v1/requests` for a movie as `user`; answers the 202 body.
///
/// # Panics
/// When the answer is not 202.
pub async fn submit_as(app: &TestApp, user: &TestUser, tmdb_id: u32, title: &str) -> Value {
    let response = app
        .request_as(&user.token, reqwest::Method::POST, "/api/v1/requests")
        .json(&json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": title, "year": 1999}))
        .send()
        .await
        .expect("POST reaches the app");
    assert_eq!(response.status(), 202, "submit of {title}");
    response.json().await.expect("a JSON answer")
}

async fn post_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.request_as(token, reqwest::Method::POST, path)
        .send()
        .await
        .expect("POST reaches the app")
}

/// Plays the history through the HTTP APIs (downloads through the store: the downloader is
/// not needed to write their events) on an app with the Overseerr simulator.
///
/// # Panics
/// When a step is refused.
pub async fn scripted(app: &TestApp) -> History {
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let mut requests = Vec::new();
    for (user, tmdb_id, title) in [
        (&alice, 603, "The Matrix"),
        (&bob, 604, "The Matrix Reloaded"),
        (&alice, 949, "Heat"),
        (&bob, 348, "Alien"),
    ] {
        let submitted = submit_as(app, user, tmdb_id, title).await;
        requests.push(submitted["id"].as_str().expect("an id").to_string());
    }
    let admin = app.admin_token().to_string();
    let approved = post_as(
        app,
        &admin,
        &format!("/api/v1/requests/{}/approve", requests[0]),
    )
    .await;
    assert_eq!(approved.status(), 200);
    let declined = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{}/decline", requests[1]),
        )
        .json(&json!({"reason": "already in the library"}))
        .send()
        .await
        .expect("POST reaches the app");
    assert_eq!(declined.status(), 200);
    let cancelled = post_as(
        app,
        &alice.token,
        &format!("/api/v1/requests/{}/cancel", requests[2]),
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let overseerr_id = app.forwarded(&requests[0]).await;
    let webhook = app.overseerr_webhook("MEDIA_AVAILABLE", overseerr_id).await;
    assert_eq!(webhook.status(), 202);

    let downloads = Downloads::new(app.pool.clone(), DownloadServices::default(), None);
    let run = |id: DownloadId, command: DownloadCommand| {
        let downloads = &downloads;
        async move {
            downloads
                .execute(id, command, None, &EventMetadata::default())
                .await
                .unwrap_or_else(|e| panic!("download command: {e}"));
        }
    };
    let (done, stopped) = (DownloadId::new(), DownloadId::new());
    run(
        done,
        DownloadCommand::Queue {
            requested_by: Actor::user(alice.id),
            url: "https://www.youtube.com/watch?v=dQw4w9WgXcQ".to_string(),
            kind: DownloadKind::Video,
            quality: Quality::Best,
            container: Container::Mp4,
        },
    )
    .await;
    run(done, DownloadCommand::Start).await;
    run(
        done,
        DownloadCommand::RecordItemCompleted {
            video_id: "dQw4w9WgXcQ".to_string(),
            title: "Never Gonna Give You Up".to_string(),
            path: "Rick Astley/Never Gonna Give You Up [dQw4w9WgXcQ].mp4".to_string(),
            bytes: 12_345_678,
            index: 1,
            total: Some(1),
        },
    )
    .await;
    run(done, DownloadCommand::Complete).await;
    run(
        done,
        DownloadCommand::RecordLibraryScanRequested {
            section_id: "7".to_string(),
            path: "/data/youtube/Rick Astley".to_string(),
        },
    )
    .await;
    run(
        stopped,
        DownloadCommand::Queue {
            requested_by: Actor::user(bob.id),
            url: "https://www.youtube.com/playlist?list=PL1234567890".to_string(),
            kind: DownloadKind::Playlist,
            quality: Quality::Best,
            container: Container::Mkv,
        },
    )
    .await;
    run(
        stopped,
        DownloadCommand::Cancel {
            by: Actor::user(bob.id),
        },
    )
    .await;

    let role = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/users/{}/role", bob.id),
        )
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .expect("PUT reaches the app");
    assert_eq!(role.status(), 200, "role change");
    let logout = post_as(app, &alice.token, "/api/v1/auth/logout").await;
    assert!(logout.status().is_success(), "logout: {}", logout.status());
    History {
        users: vec![alice, bob],
        requests,
        downloads: vec![done.into(), stopped.into()],
    }
}

/// Waits until every projection has passed the head of the log.
///
/// # Panics
/// When they do not within 30 s.
pub async fn projections_caught_up(app: &TestApp) {
    let head = medianest_store::log::head_position(&app.pool)
        .await
        .expect("the head");
    let names: Vec<String> = medianest_projections::all()
        .iter()
        .map(|p| format!("projection-{}", p.name()))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let outcome = checkpoint::wait_until_reached(&app.pool, &names, head, WAIT)
        .await
        .expect("checkpoints");
    assert_eq!(
        outcome,
        checkpoint::WaitOutcome::Reached,
        "the projections reach position {head}"
    );
}
