//! Reloads (contract §8): a hundred reloads under load lose no request, a
//! file change is picked up and a bad one refused, and in-flight requests
//! finish on their generation and through shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::support::client::get;
use crate::support::eventually;
use crate::support::gateway::{config, TestGateway};
use crate::support::upstream::RecordingUpstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_lose_no_request() {
    let up = RecordingUpstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let good = config(&up.url(), None, "");
    std::fs::write(&path, &good).unwrap();
    let gw = TestGateway::builder().toml(&good).start().await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            gw.url("/v1/status/x"),
        );
        load.push(tokio::spawn(async move {
            let c = crate::support::client::client();
            while !stop.load(Ordering::Relaxed) {
                let r = crate::support::client::send_with(
                    &c,
                    Method::GET,
                    &url,
                    &[],
                    Default::default(),
                )
                .await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let (mut successes, mut failures) = (0, 0);
    for i in 0..100 {
        let text = if i % 5 == 4 {
            format!("{good}\n[[routes]]\nprefix = \"/bad\"\nupstream = \"nowhere\"\n")
        } else {
            // Valid, and different each time (a new max_body).
            good.replace(
                "max_body = \"4MiB\"",
                &format!("max_body = \"{}KiB\"", 4096 + i),
            )
        };
        std::fs::write(&path, text).unwrap();
        match gw.reloader(&path).reload() {
            Ok(_) => successes += 1,
            Err(_) => failures += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!((successes, failures), (80, 20));
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let m = &gw.gw.metrics.config_reloads;
    assert_eq!(m.with_label_values(&["success"]).get(), 80);
    assert_eq!(m.with_label_values(&["failure"]).get(), 20);
    assert_eq!(gw.gw.snapshot.load().generation, 81);
}

#[tokio::test]
async fn a_file_change_is_picked_up_and_a_bad_one_refused() {
    let up = RecordingUpstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let good = config(&up.url(), None, "");
    std::fs::write(&path, &good).unwrap();
    let gw = TestGateway::builder().toml(&good).start().await;
    let watcher = tokio::spawn(osir_gateway::app::watch::watch_config(
        gw.reloader(&path),
        path.clone(),
        good.clone().into_bytes(),
    ));
    assert_eq!(get(&gw.url("/v2/new"), &[]).await.status, 404);

    // Editors' rename-on-save: write elsewhere, rename over the file.
    let added =
        format!("{good}\n[[routes]]\nprefix = \"/v2/new\"\nupstream = \"up\"\npublic = true\n");
    let tmp = dir.path().join(".gateway.toml.swp");
    std::fs::write(&tmp, &added).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || gw.gw.snapshot.load().generation
            == 2)
        .await
    );
    assert_eq!(get(&gw.url("/v2/new"), &[]).await.status, 200);

    std::fs::write(&path, "this is = not [valid").unwrap();
    let failures = gw.gw.metrics.config_reloads.with_label_values(&["failure"]);
    assert!(eventually(Duration::from_secs(3), || failures.get() == 1).await);
    assert_eq!(gw.gw.snapshot.load().generation, 2);
    assert_eq!(
        get(&gw.url("/v2/new"), &[]).await.status,
        200,
        "the old config must keep serving"
    );
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_their_generation_and_through_shutdown() {
    let slow = RecordingUpstream::start("slow").await;
    let other = RecordingUpstream::start("other").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let first = config(&slow.url(), None, "").replace("timeout = \"1s\"", "timeout = \"5s\"");
    std::fs::write(&path, &first).unwrap();
    let gw = TestGateway::builder().toml(&first).start().await;

    let url = gw.url("/v1/status/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[("x-test-delay-ms", "700")]).await });
    assert!(eventually(Duration::from_secs(3), || slow.count() == 1).await);
    std::fs::write(&path, config(&other.url(), None, "")).unwrap();
    gw.reloader(&path).reload().unwrap();
    // New requests go to the new upstream; the old one finishes where it began.
    assert_eq!(
        get(&gw.url("/v1/status/new"), &[])
            .await
            .header("x-upstream"),
        Some("other")
    );
    let r = in_flight.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("x-upstream")),
        (200, Some("slow"))
    );

    // Graceful shutdown: a request in flight when the signal comes completes.
    let url = gw.url("/v1/status/last");
    let last = tokio::spawn(async move { get(&url, &[("x-test-delay-ms", "500")]).await });
    assert!(eventually(Duration::from_secs(3), || other.count() == 2).await);
    gw.shutdown().await;
    assert_eq!(last.await.unwrap().status, 200);
}
