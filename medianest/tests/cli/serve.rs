//! The `medianest` binary: configuration errors name the variable, `--help` documents every
//! variable, and SIGTERM shuts `serve` down gracefully.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use medianest_testkit::app::{fresh_database, nats_url, unique_stream};

const BIN: &str = env!("CARGO_BIN_EXE_medianest");

/// `medianest serve` with a clean environment plus `env`.
fn serve(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("serve").env_clear();
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_listen_address_stops_start_up_naming_the_variable() {
    let output = serve(&[("MEDIANEST_HTTP_ADDR", "not-an-address")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("MEDIANEST_HTTP_ADDR"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_overseerr_url_without_an_api_key_stops_start_up_naming_the_key() {
    let output = serve(&[("MEDIANEST_OVERSEERR_URL", "http://127.0.0.1:5055")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("MEDIANEST_OVERSEERR_API_KEY"));
}

#[test]
fn a_bad_auto_approve_policy_is_refused() {
    let output = serve(&[("MEDIANEST_AUTO_APPROVE", "sometimes")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("MEDIANEST_AUTO_APPROVE"));
}

#[test]
fn a_per_address_sign_in_limit_of_zero_stops_start_up_naming_the_variable() {
    let output = serve(&[("MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS", "0")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_out_of_range_number_stops_start_up_naming_the_variable_and_the_range() {
    let output = serve(&[("MEDIANEST_SAGA_CONCURRENCY", "0")]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("MEDIANEST_SAGA_CONCURRENCY") && err.contains("1..=1024"),
        "{err}"
    );
}

#[test]
fn an_empty_variable_counts_as_unset() {
    // Read, an empty pool size would be refused; unset, its default applies and start-up
    // goes on to the (unreachable) database.
    let output = serve(&[
        ("MEDIANEST_DATABASE_POOL_SIZE", ""),
        (
            "MEDIANEST_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        ),
        ("MEDIANEST_HTTP_ADDR", "127.0.0.1:0"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("MEDIANEST_DATABASE_URL"));
}

#[test]
fn an_unreachable_database_stops_start_up_naming_the_variable() {
    let output = serve(&[
        (
            "MEDIANEST_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        ),
        ("MEDIANEST_HTTP_ADDR", "127.0.0.1:0"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("MEDIANEST_DATABASE_URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_documents_every_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "MEDIANEST_DATABASE_URL",
        "MEDIANEST_NATS_URL",
        "MEDIANEST_STREAM",
        "MEDIANEST_SUBJECT_PREFIX",
        "MEDIANEST_HTTP_ADDR",
        "MEDIANEST_ADMIN_TOKEN",
        "MEDIANEST_OVERSEERR_URL",
        "MEDIANEST_OVERSEERR_API_KEY",
        "MEDIANEST_OVERSEERR_WEBHOOK_SECRET",
        "MEDIANEST_AUTO_APPROVE",
        "MEDIANEST_SIGNIN_ATTEMPTS",
        "MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS",
        "MEDIANEST_DATABASE_POOL_SIZE",
        "MEDIANEST_OVERSEERR_TIMEOUT_SECS",
        "MEDIANEST_PLEX_TIMEOUT_SECS",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_serve_gracefully() {
    let (database_url, _pool) = fresh_database().await;
    let (stream, subjects) = unique_stream();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .env("MEDIANEST_DATABASE_URL", &database_url)
        .env("MEDIANEST_NATS_URL", nats_url())
        .env("MEDIANEST_STREAM", &stream)
        .env("MEDIANEST_SUBJECT_PREFIX", subjects.prefix())
        .env("MEDIANEST_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("MEDIANEST_ADMIN_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(response) = client.get(&url).send().await {
            ready = response.status() == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "serve became ready");
    let pid = child.id().expect("a pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve stops within the grace period")
        .expect("exit status");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}
