//! The served OpenAPI document against the API itself: schemathesis (pinned in
//! `scripts/services.sh`, installed by `scripts/test`) fuzzes every operation of
//! `/api/openapi.json` on an app with all roles, the Overseerr simulator, the Plex
//! simulators, the Plex sync and downloads on (so that no operation answers the 503 of a
//! feature left unconfigured), and must report no failure of these checks:
//!
//! - `not_a_server_error`: no input reaches a 5xx;
//! - `status_code_conformance`: every status answered is listed for its operation;
//! - `content_type_conformance`: every body has a content type listed for its status;
//! - `response_schema_conformance`: every body matches its declared schema;
//! - `negative_data_rejection`: input the document says is invalid is refused with a 4xx.
//!
//! The admin's bearer token authenticates every request; the webhooks get their own secrets
//! (see [`config_file`]). The run is bounded (50 examples per operation, a fixed seed so a
//! failure reproduces, a request timeout, a hard limit on the whole process) and talks to
//! 127.0.0.1 only. Left out, because they would make the rest of the run meaningless or
//! never end (docs/decisions.md):
//!
//! - `POST /api/v1/auth/logout` ends the admin session whose token authenticates the run;
//! - `GET /api/v1/stream` is server-sent events and never ends;
//! - the `stateful` phase: the document declares no links, and inferred ones would feed the
//!   admin's own session id (`GET /api/v1/me/sessions`) into `DELETE
//!   /api/v1/me/sessions/{id}`. Changing one's own role or disabling oneself is refused
//!   (403), so those operations stay in.

use std::process::Stdio;
use std::time::Duration;

use medianest_testkit::app::{TestApp, TestOptions, PLEX_WEBHOOK_SECRET, WEBHOOK_SECRET};
use tokio::process::Command;

/// The schemathesis executable `scripts/test` puts on PATH.
const SCHEMATHESIS: &str = "schemathesis";

/// Upper bound for the whole schemathesis process, so a hung run fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The checks that must hold for every operation.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection";

/// Operations left out, with why in the module documentation.
const EXCLUDED_PATHS: [&str; 2] = ["/api/v1/auth/logout", "/api/v1/stream"];

/// The run's configuration: the admin's bearer token on every request, except the webhooks,
/// which get their own secrets (Overseerr's in `Authorization`, Plex's in the path) so that
/// their handlers are reached rather than only their 401.
fn config_file(admin_token: &str) -> String {
    format!(
        r#"headers = {{ Authorization = "Bearer {admin_token}" }}

[[operations]]
include-path = "/api/v1/webhooks/overseerr"
headers = {{ Authorization = "{WEBHOOK_SECRET}" }}

[[operations]]
include-path = "/api/v1/webhooks/plex/{{secret}}"
parameters = {{ secret = "{PLEX_WEBHOOK_SECRET}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_holds_under_schemathesis() {
    let app = TestApp::spawn_with(TestOptions {
        downloads: true,
        plex_sync: Some(medianest_workers::PlexSyncConfig::default()),
        ..TestOptions::default()
    })
    .await;
    let workdir = std::env::temp_dir().join(format!("medianest-st-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&workdir).expect("create a work dir for schemathesis");
    let config = workdir.join("schemathesis.toml");
    std::fs::write(&config, config_file(&app.admin.token)).expect("write schemathesis.toml");

    let mut command = Command::new(SCHEMATHESIS);
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", app.base_url))
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "50"])
        .args(["--seed", "12"])
        .args(["--request-timeout", "10"])
        .args(["--workers", "2"])
        .args(["--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false"]);
    for path in EXCLUDED_PATHS {
        command.args(["--exclude-path", path]);
    }
    command
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{SCHEMATHESIS}` is not on PATH: run the tests with `scripts/test`, which installs \
             the pinned version into target/tools and puts it on PATH"
        ),
        Err(err) => panic!("could not start `{SCHEMATHESIS}`: {err}"),
    };
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_LIMIT:?}"))
        .expect("wait for schemathesis");
    let _ = std::fs::remove_dir_all(&workdir);

    // Its summary (operations run, phases, warnings) is worth reading with `--nocapture`.
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "schemathesis found failures ({}), its report is above:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
}
