//! `medianest users create --username NAME [--email EMAIL] [--admin] --password-stdin [--json]`
//! run as a real process against a fresh database: what it prints, its exit codes (0 created,
//! 2 usage or invalid input, 3 username taken), and what it records — a `registered` event
//! with an argon2id hash, never the password itself.

use std::process::Stdio;
use std::time::Duration;

use medianest_store::credentials::verify_password;
use medianest_testkit::app::{eventually, fresh_database, nats_url, unique_stream};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_medianest");
const PASSWORD: &str = "correct horse battery staple";
/// For runs that must not need a database.
const UNREACHABLE_DATABASE: &str = "postgres://nobody@127.0.0.1:1/none";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A finished run of the binary.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `medianest args…` with a clean environment, `MEDIANEST_DATABASE_URL` set to
/// `database_url` and `stdin` on standard input.
async fn medianest(database_url: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("MEDIANEST_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().expect("a piped stdin");
    // The binary may exit (usage errors) before reading: a broken pipe is no failure.
    let _ = input.write_all(stdin.as_bytes()).await;
    drop(input);
    let output = child.wait_with_output().await.expect("the binary exits");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `medianest users create args… --password-stdin` with `password` and a newline on stdin.
async fn create(database_url: &str, args: &[&str], password: &str) -> Run {
    let mut all = vec!["users", "create"];
    all.extend_from_slice(args);
    all.push("--password-stdin");
    medianest(database_url, &all, &format!("{password}\n")).await
}

/// Asserts that `run` exited with `code`, printing it otherwise.
fn assert_exit(case: &str, run: &Run, code: i32) {
    assert_eq!(run.code, Some(code), "{case}: exit code of {run:#?}");
}

/// Asserts that `run` exited 2 with a message naming `what`, and printed nothing on stdout.
fn assert_invalid(case: &str, run: &Run, what: &str) {
    assert_exit(case, run, 2);
    assert!(
        run.stderr.to_lowercase().contains(what),
        "{case}: the message names {what}: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{case}: no output: {}", run.stdout);
}

/// The first UUID among the words of `text`.
fn uuid_in(text: &str) -> Option<Uuid> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find_map(|word| Uuid::parse_str(word).ok())
}

/// A stored `registered` event.
#[derive(Debug)]
struct Registered {
    aggregate_id: String,
    position: i64,
    /// The event's members (`username`, `role`, `password_hash`, …).
    event: Value,
}

/// Every `registered` event of the log, in order.
async fn registered(pool: &PgPool) -> Vec<Registered> {
    let rows: Vec<(String, i64, Value)> = sqlx::query_as(
        "SELECT aggregate_id, global_position, payload FROM events
          WHERE aggregate_type = 'user_account' AND event_type = 'registered'
          ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .expect("read the events");
    rows.into_iter()
        .map(|(aggregate_id, position, payload)| Registered {
            aggregate_id,
            position,
            event: payload["registered"].clone(),
        })
        .collect()
}

/// Asserts that nothing at all was recorded: no event and no reserved identity.
async fn assert_nothing_written(case: &str, pool: &PgPool) {
    let (events, identities): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM user_identities)",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!((events, identities), (0, 0), "{case}: nothing written");
}

/// The one `registered` event of account `id`.
async fn registration_of(pool: &PgPool, id: Uuid) -> Registered {
    let mut found: Vec<Registered> = registered(pool)
        .await
        .into_iter()
        .filter(|r| r.aggregate_id == id.to_string())
        .collect();
    assert_eq!(found.len(), 1, "one registered event of {id}: {found:?}");
    found.remove(0)
}

/// A `medianest serve` on the database at `database_url`, killed when dropped.
struct Serve {
    child: tokio::process::Child,
    base_url: String,
}

impl Serve {
    async fn start(database_url: &str) -> Self {
        let (stream, subjects) = unique_stream();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("MEDIANEST_DATABASE_URL", database_url)
            .env("MEDIANEST_NATS_URL", nats_url())
            .env("MEDIANEST_STREAM", &stream)
            .env("MEDIANEST_SUBJECT_PREFIX", subjects.prefix())
            .env("MEDIANEST_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("serve starts");
        let base_url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = format!("{base_url}/readyz");
        eventually("serve is ready", Duration::from_secs(30), || async {
            let response = client.get(&ready).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        Self { child, base_url }
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base_url))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login reaches serve")
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop serve");
    }
}

// ---------------------------------------------------------------------------------------
// Creating accounts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_an_admin_prints_its_id_and_records_an_argon2id_hash_not_the_password() {
    let (database_url, pool) = fresh_database().await;
    // Only the first line of standard input is the password.
    let stdin = format!("{PASSWORD}\nsecond line, not part of it\n");
    let run = medianest(
        &database_url,
        &[
            "users",
            "create",
            "--username",
            "root",
            "--admin",
            "--password-stdin",
        ],
        &stdin,
    )
    .await;
    assert_exit("create an admin", &run, 0);
    let id =
        uuid_in(&run.stdout).unwrap_or_else(|| panic!("the id is printed: {}", run.stdout.trim()));
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "the password is never printed: {run:#?}"
    );

    let registration = registration_of(&pool, id).await;
    let event = &registration.event;
    assert_eq!(event["username"], "root", "{event}");
    assert_eq!(event["role"], "admin", "{event}");
    let hash = event["password_hash"].as_str().expect("a password hash");
    assert!(
        hash.starts_with("$argon2id$"),
        "an argon2id PHC string: {hash}"
    );
    assert!(
        verify_password(PASSWORD, Some(hash)),
        "the hash is of the password"
    );
    assert!(
        !verify_password(
            &format!("{PASSWORD}\nsecond line, not part of it"),
            Some(hash)
        ),
        "the second line is not part of the password"
    );
    let leaks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE strpos(payload::text, $1) > 0 OR strpos(metadata::text, $1) > 0",
    )
    .bind(PASSWORD)
    .fetch_one(&pool)
    .await
    .expect("search the events");
    assert_eq!(leaks, 0, "the clear password is stored nowhere in the log");
}

#[tokio::test]
async fn with_json_it_prints_the_id_username_role_and_position() {
    let (database_url, pool) = fresh_database().await;
    let cases = [
        (
            "an admin",
            vec!["--username", "Root", "--admin", "--json"],
            "admin",
        ),
        (
            "a user with an e-mail",
            vec![
                "--username",
                "alice",
                "--email",
                "alice@example.com",
                "--json",
            ],
            "user",
        ),
    ];
    for (case, args, role) in cases {
        let run = create(&database_url, &args, PASSWORD).await;
        assert_exit(case, &run, 0);
        let printed: Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{case}: JSON on stdout ({e}): {}", run.stdout));
        let id: Uuid = printed["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{case}: an id: {printed}"));
        assert_eq!(printed["username"], args[1], "{case}: {printed}");
        assert_eq!(printed["role"], role, "{case}: {printed}");
        let registration = registration_of(&pool, id).await;
        assert_eq!(
            printed["position"], registration.position,
            "{case}: the position of the registered event: {printed}"
        );
        assert_eq!(registration.event["role"], role, "{case}");
    }
}

#[tokio::test]
async fn an_admin_created_with_the_cli_signs_in_over_http() {
    let (database_url, _pool) = fresh_database().await;
    let run = create(&database_url, &["--username", "root", "--admin"], PASSWORD).await;
    assert_exit("create an admin", &run, 0);
    let id = uuid_in(&run.stdout).expect("the id is printed");

    let serve = Serve::start(&database_url).await;
    let response = serve.login("root", PASSWORD).await;
    assert_eq!(response.status(), 200, "the admin signs in");
    let session: Value = response.json().await.expect("a JSON answer");
    assert_eq!(session["user"]["id"], id.to_string(), "{session}");
    assert_eq!(session["user"]["role"], "admin", "{session}");
    assert!(
        session["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("mn_")),
        "{session}"
    );
    let response = serve.login("root", "not-the-password").await;
    assert_eq!(response.status(), 401, "a wrong password does not");
    serve.stop().await;
}

// ---------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_taken_username_in_any_case_exits_3_saying_it_is_taken() {
    let (database_url, pool) = fresh_database().await;
    let run = create(&database_url, &["--username", "Alice"], PASSWORD).await;
    assert_exit("the first Alice", &run, 0);
    let first = uuid_in(&run.stdout).expect("the id is printed");
    for name in ["Alice", "alice", "ALICE", " alice "] {
        let run = create(&database_url, &["--username", name, "--admin"], PASSWORD).await;
        let case = format!("username {name:?}");
        assert_exit(&case, &run, 3);
        assert!(
            run.stderr.contains("taken"),
            "{case}: says the username is taken: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{case}: no output: {}", run.stdout);
    }
    let all = registered(&pool).await;
    assert_eq!(all.len(), 1, "one account: {all:?}");
    assert_eq!(all[0].aggregate_id, first.to_string());
    assert_eq!(
        all[0].event["role"], "user",
        "the first account is unchanged"
    );
}

#[tokio::test]
async fn a_too_short_or_missing_password_exits_2_and_writes_nothing() {
    let (database_url, pool) = fresh_database().await;
    for (case, stdin) in [
        ("7 characters", "1234567\n"),
        ("an empty line", "\n"),
        ("nothing on stdin", ""),
        ("7 characters without a newline", "1234567"),
    ] {
        let run = medianest(
            &database_url,
            &[
                "users",
                "create",
                "--username",
                "root",
                "--admin",
                "--password-stdin",
            ],
            stdin,
        )
        .await;
        assert_invalid(case, &run, "password");
        assert_nothing_written(case, &pool).await;
    }
}

#[tokio::test]
async fn an_invalid_username_or_email_exits_2_naming_it_and_writes_nothing() {
    let (database_url, pool) = fresh_database().await;
    let too_long = "a".repeat(65);
    let cases = [
        (
            "a username with a space",
            vec!["--username", "bad name"],
            "username",
        ),
        (
            "a username with a slash",
            vec!["--username", "ali/ce"],
            "username",
        ),
        ("an empty username", vec!["--username", ""], "username"),
        (
            "a 65-character username",
            vec!["--username", &too_long],
            "username",
        ),
        (
            "an e-mail without @",
            vec!["--username", "alice", "--email", "alice.example.com"],
            "email",
        ),
    ];
    for (case, args, what) in cases {
        let run = create(&database_url, &args, PASSWORD).await;
        assert_invalid(case, &run, what);
        assert_nothing_written(case, &pool).await;
    }
    // The refusals left nothing behind: the name is free.
    let run = create(&database_url, &["--username", "alice"], PASSWORD).await;
    assert_exit("a valid alice afterwards", &run, 0);
}

#[tokio::test]
async fn usage_errors_exit_2_and_write_nothing() {
    let (database_url, pool) = fresh_database().await;
    let stdin = format!("{PASSWORD}\n");
    let cases = [
        (
            "without --password-stdin",
            vec!["users", "create", "--username", "root", "--admin"],
            "--password-stdin",
        ),
        (
            "without --username",
            vec!["users", "create", "--admin", "--password-stdin"],
            "--username",
        ),
        (
            "with the password as an argument",
            vec![
                "users",
                "create",
                "--username",
                "root",
                "--password",
                PASSWORD,
                "--password-stdin",
            ],
            "--password",
        ),
    ];
    for (case, args, what) in cases {
        let run = medianest(&database_url, &args, &stdin).await;
        assert_invalid(case, &run, what);
        assert_nothing_written(case, &pool).await;
    }
}

#[tokio::test]
async fn help_documents_the_flags_of_users_create() {
    let run = medianest(UNREACHABLE_DATABASE, &["users", "create", "--help"], "").await;
    assert_exit("users create --help", &run, 0);
    for flag in [
        "--username",
        "--email",
        "--admin",
        "--password-stdin",
        "--json",
    ] {
        assert!(
            run.stdout.contains(flag),
            "--help documents {flag}: {}",
            run.stdout
        );
    }
    let run = medianest(UNREACHABLE_DATABASE, &["users", "--help"], "").await;
    assert_exit("users --help", &run, 0);
    assert!(run.stdout.contains("create"), "{}", run.stdout);
}
