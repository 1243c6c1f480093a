//! The admin commands of the `medianest` binary against a running app (real PostgreSQL and
//! NATS): `projections status`, `replay` (rebuild, dry run, busy, `--to-nats`), `events tail`
//! and `events show` — their output, `--json` and exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use medianest_nats::CloudEvent;
use medianest_store::lock::InstanceLock;
use medianest_testkit::app::TestApp;
use medianest_testkit::history::{projections_caught_up, scripted, submit_as};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_medianest");

/// Runs `medianest <args> --database-url <app's>` and waits for it.
fn run(app: &TestApp, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--database-url", &app.database_url])
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// The same, off the async runtime.
async fn medianest(app: &TestApp, args: &[&str]) -> Output {
    let (bin_args, url): (Vec<String>, String) = (
        args.iter().map(|a| a.to_string()).collect(),
        app.database_url.clone(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&bin_args)
            .args(["--database-url", &url])
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("joined")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", stdout(output)))
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn projections_status_lists_every_projection_with_its_lag() {
    let app = TestApp::spawn().await;
    scripted(&app).await;
    projections_caught_up(&app).await;
    let head = medianest_store::log::head_position(&app.pool)
        .await
        .expect("head");
    let last = medianest_store::log::read_last(&app.pool, 1, None)
        .await
        .expect("the last event")[0]
        .position;

    let output = medianest(&app, &["projections", "status", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status = json(&output);
    assert_eq!(status["head"], head);
    let names: Vec<&str> = status["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .map(|p| p["projection"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names,
        [
            "requests",
            "request_search",
            "downloads",
            "users",
            "sessions",
            "dashboard"
        ]
    );
    for projection in status["projections"].as_array().expect("projections") {
        assert_eq!(projection["lag_events"], 0, "{projection}");
        assert_eq!(projection["lag_seconds"], 0.0, "{projection}");
        assert_eq!(projection["checkpoint"]["position"], last, "{projection}");
    }

    let output = medianest(&app, &["projections", "status"]).await;
    assert_eq!(output.status.code(), Some(0));
    let table = stdout(&output);
    assert!(table.starts_with("PROJECTION"), "{table}");
    assert!(table.contains("request_search"), "{table}");
    app.stop().await;
}

#[tokio::test]
async fn replay_rebuilds_compares_and_says_what_happened_in_its_exit_code() {
    let app = TestApp::spawn().await;
    let history = scripted(&app).await;
    projections_caught_up(&app).await;

    // An intact read model: the dry run finds it identical.
    let output = medianest(
        &app,
        &["replay", "--projection", "requests", "--dry-run", "--json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["dry_run"], true);
    let replay = &report["replays"][0];
    assert_eq!(replay["projection"], "requests");
    assert_eq!(replay["swapped"], false);
    assert_eq!(replay["tables"][0]["live_rows"], 4);
    assert_eq!(replay["tables"][0]["only_live"], 0);

    // A damaged one: exit 3, nothing changed.
    sqlx::query("UPDATE requests SET status = 'pending' WHERE id = $1::uuid")
        .bind(&history.requests[0])
        .execute(&app.pool)
        .await
        .expect("damage");
    let output = medianest(&app, &["replay", "--projection", "requests", "--dry-run"]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("1 rows only in the live table"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("dry run: nothing changed"));

    // The replay repairs it and says where the live projection continues.
    let output = medianest(&app, &["replay", "--projection", "requests"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("swapped in"),
        "{}",
        stdout(&output)
    );
    let status: String = sqlx::query_scalar("SELECT status FROM requests WHERE id = $1::uuid")
        .bind(&history.requests[0])
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "available");

    // --all replays each projection.
    let output = medianest(&app, &["replay", "--all", "--dry-run", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["replays"].as_array().map(Vec::len), Some(6));

    // Another replay of the same projection holds the lock: exit 4.
    let held = InstanceLock::try_acquire(&app.pool, "replay:users")
        .await
        .expect("a connection")
        .expect("free");
    let output = medianest(&app, &["replay", "--projection", "users"]).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("another replay of users is running"));
    held.release().await.expect("released");
    app.stop().await;
}

#[tokio::test]
async fn replay_refuses_bad_usage_with_exit_code_2() {
    let app = TestApp::spawn().await;
    for (args, says) in [
        (vec!["replay", "--projection", "nope"], "unknown projection"),
        (vec!["replay"], "required"),
        (
            vec!["replay", "--projection", "requests", "--all"],
            "cannot be used",
        ),
        (vec!["replay", "--from", "3"], "--to-nats"),
        (vec!["replay", "--to-nats"], "--from"),
        (vec!["replay", "--to-nats", "--from", "0"], "0"),
        (
            vec!["replay", "--to-nats", "--from", "9", "--to", "3"],
            "--to must not be below --from",
        ),
        (
            vec!["replay", "--to-nats", "--from", "1", "--dry-run"],
            "cannot be used",
        ),
        (vec!["events", "tail", "-n", "-1"], "-1"),
    ] {
        let output = run(&app, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn events_show_and_tail_read_the_log() {
    let app = TestApp::spawn().await;
    let history = scripted(&app).await;
    let matrix = &history.requests[0];

    let output = medianest(&app, &["events", "show", "media_request", matrix, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let events = json_lines(&output);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().expect("a type"))
        .collect();
    assert_eq!(types, ["submitted", "approved", "forwarded", "available"]);
    assert_eq!(events[0]["type"], "medianest.media_request.submitted.v1");
    assert_eq!(events[3]["sequence"], 4);

    let output = medianest(&app, &["events", "show", "media_request", matrix]).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output).lines().count(), 4);
    assert!(stdout(&output).contains(&format!("media_request/{matrix}  #1  submitted")));

    let unknown = uuid::Uuid::now_v7().to_string();
    let output = medianest(&app, &["events", "show", "media_request", &unknown]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(stdout(&output).is_empty());

    let head = medianest_store::log::head_position(&app.pool)
        .await
        .expect("head");
    let output = medianest(&app, &["events", "tail", "-n", "3", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let tail = json_lines(&output);
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[2]["position"], head);
    let output = medianest(
        &app,
        &["events", "tail", "--aggregate-type", "download", "--json"],
    )
    .await;
    let downloads = json_lines(&output);
    assert_eq!(downloads.len(), 7, "5 + 2 download events");
    assert!(downloads.iter().all(|e| e["aggregate_type"] == "download"));

    // --follow prints what is written after it starts.
    let mut follower = Command::new(BIN)
        .args(["events", "tail", "-n", "0", "--follow", "--json"])
        .args(["--aggregate-type", "media_request"])
        .args(["--database-url", &app.database_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawned");
    let lines = BufReader::new(follower.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || lines.lines().next().map(|l| l.expect("a line")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = submit_as(&app, &history.users[1], 78, "Blade Runner").await;
    let line = tokio::task::spawn_blocking(move || reader.join().expect("joined"))
        .await
        .expect("joined")
        .expect("a followed event");
    let _ = follower.kill();
    let _ = follower.wait();
    let followed: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(followed["aggregate_id"], submitted["id"]);
    assert_eq!(followed["position"], submitted["position"]);
    app.stop().await;
}

#[tokio::test]
async fn replay_to_nats_republishes_a_range_that_a_subscriber_receives_intact() {
    let app = TestApp::spawn().await;
    let history = scripted(&app).await;
    let all = sqlx::query_as::<_, (i64, String)>(
        "SELECT global_position, aggregate_type FROM events ORDER BY global_position",
    )
    .fetch_all(&app.pool)
    .await
    .expect("positions");
    let (from, to) = (all[2].0, all[all.len() - 3].0);
    let expected: Vec<medianest_store::StoredEvent> = {
        let mut events = Vec::new();
        for id in &history.requests {
            events.extend(
                medianest_store::log::aggregate_events(&app.pool, "media_request", id)
                    .await
                    .expect("events"),
            );
        }
        events.retain(|e| e.position >= from && e.position <= to);
        events.sort_by_key(|e| (e.tx_id, e.position));
        events
    };
    assert!(expected.len() >= 8, "a range worth re-publishing");
    // The relay has published the whole history: what arrives next is the re-publication.
    let head = medianest_store::log::head_position(&app.pool)
        .await
        .expect("head");
    let relay = format!("relay:{}", app.stream);
    assert_eq!(
        medianest_store::checkpoint::wait_until_reached(
            &app.pool,
            &[&relay],
            head,
            Duration::from_secs(30)
        )
        .await
        .expect("checkpoint"),
        medianest_store::checkpoint::WaitOutcome::Reached,
        "the relay catches up"
    );

    let mut subscriber = app
        .nats
        .subscribe(app.subjects.all_events())
        .await
        .expect("subscribe");
    app.nats.flush().await.expect("flush");
    let output = medianest(
        &app,
        &[
            "replay",
            "--to-nats",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--aggregate-type",
            "media_request",
            "--json",
            "--nats-url",
            &medianest_testkit::app::nats_url(),
            "--subject-prefix",
            app.subjects.prefix(),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    let published = &report["published"];
    assert_eq!(
        published["stored"].as_u64().unwrap_or(0) + published["duplicates"].as_u64().unwrap_or(0),
        expected.len() as u64
    );
    assert_eq!(report["first_position"], expected[0].position);

    let mut received = Vec::new();
    while received.len() < expected.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
            .await
            .expect("every re-published event arrives")
            .expect("a message");
        received.push(message);
    }
    for (message, event) in received.iter().zip(&expected) {
        assert_eq!(
            message.subject.as_str(),
            app.subjects
                .event("media_request", &event.aggregate_id, &event.event_type)
        );
        let headers = message.headers.as_ref().expect("headers");
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(event.event_id().as_str())
        );
        let body: CloudEvent = serde_json::from_slice(&message.payload).expect("a CloudEvent");
        assert_eq!(body, CloudEvent::from_stored(event).expect("public form"));
    }
    // Nothing outside the range or of another type.
    let extra = tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await;
    assert!(
        extra.is_err(),
        "nothing more: {:?}",
        extra.ok().flatten().map(|m| m.subject)
    );
    app.stop().await;
}
