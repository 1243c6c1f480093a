//! `nats/nats-server.conf`: the `medianest` user may do everything; the `integrator` user
//! reads the stream with its own consumers but cannot publish MediaNest subjects. Runs a
//! real `nats-server` with the file on a free port.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

struct Server {
    child: tokio::process::Child,
    url: String,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn nats_server() -> PathBuf {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("nats-server is installed (scripts/test installs it)")
}

async fn start() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("medianest-nats-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("store dir");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats/nats-server.conf");
    let child = tokio::process::Command::new(nats_server())
        .args([
            "-c",
            config,
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-sd",
        ])
        .arg(&dir)
        .env("MEDIANEST_NATS_PASSWORD", "medianest-secret")
        .env("MEDIANEST_INTEGRATOR_PASSWORD", "integrator-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn connect(server: &Server, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(&server.url)
        .await
        .expect("connects")
}

#[tokio::test]
async fn integrators_read_the_stream_but_cannot_publish_medianest_subjects() {
    let server = start().await;
    let medianest = jetstream::new(connect(&server, "medianest", "medianest-secret").await);
    let mut events = medianest
        .get_or_create_stream(stream::Config {
            name: "MEDIANEST_EVENTS".into(),
            subjects: vec!["medianest.events.>".into()],
            ..Default::default()
        })
        .await
        .expect("medianest creates the stream");
    medianest
        .publish("medianest.events.media_request.1.submitted", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let integrator_client = connect(&server, "integrator", "integrator-secret").await;
    let integrator = jetstream::new(integrator_client.clone());
    // Its own durable consumer, reading what MediaNest published.
    let consumer: consumer::PullConsumer = integrator
        .get_stream("MEDIANEST_EVENTS")
        .await
        .expect("stream info")
        .get_or_create_consumer(
            "home-assistant",
            consumer::pull::Config {
                durable_name: Some("home-assistant".into()),
                ..Default::default()
            },
        )
        .await
        .expect("integrators create consumers");
    let mut messages = consumer.messages().await.expect("pull");
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("delivered");
    assert_eq!(
        message.subject.as_str(),
        "medianest.events.media_request.1.submitted"
    );
    message.ack().await.expect("integrators ack");

    // Publishing a MediaNest subject is refused: nothing reaches the stream.
    let forged = integrator
        .publish("medianest.events.media_request.2.available", "{}".into())
        .await;
    if let Ok(ack) = forged {
        assert!(
            tokio::time::timeout(Duration::from_secs(2), ack)
                .await
                .map_or(true, |ack| ack.is_err()),
            "a forged event was stored"
        );
    }
    integrator_client.flush().await.ok();
    let info = events.info().await.expect("info");
    assert_eq!(
        info.state.messages, 1,
        "only MediaNest's own event is in the stream"
    );

    // Nor may it create streams of its own.
    let created = integrator
        .create_stream(stream::Config {
            name: "ROGUE".into(),
            subjects: vec!["rogue.>".into()],
            ..Default::default()
        })
        .await;
    assert!(created.is_err(), "integrators cannot create streams");
}
