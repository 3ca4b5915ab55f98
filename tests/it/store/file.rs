//! The file store: JSON files in temp dirs, several handles standing in for
//! several processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use osir_gateway::keys::Env;
use osir_gateway::keys::{KeyRecord, Timestamp};
use osir_gateway::store::file::FileStore;
use osir_gateway::store::StoreError;

use crate::support::eventually_async;

use super::{delta, file_store, full_record, new_key, record, Recorder, Seen};

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn file_roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let store = file_store(&path);
    assert!(store.list().await.unwrap().is_empty());
    assert!(
        !path.exists(),
        "a missing file is created on the first write only"
    );

    let (k1, h1) = new_key(Env::Live);
    let (k2, h2) = new_key(Env::Test);
    let r1 = full_record("key_one", &k1, 1_700_000_000_123);
    let r2 = record("key_two", &k2, 1_600_000_000_000);
    store.insert(&h1, &r1).await.unwrap();
    store.insert(&h2, &r2).await.unwrap();
    let dup = store
        .insert(&h2, &record("key_three", &k2, 1))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    let unknown = store
        .replace(&record("key_ghost", &k1, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, StoreError::Conflict(m) if m.contains("key_ghost")),
        "{unknown}"
    );
    let r2b = KeyRecord {
        revoked_at: Some(Timestamp(1_650_000_000_000)),
        ..r2
    };
    store.replace(&r2b).await.unwrap();
    store
        .add_usage(&[delta("key_one", &[("2026-01-01", 2)], 7_000, "192.0.2.1")])
        .await
        .unwrap();

    for s in [&store, &file_store(&path)] {
        assert_eq!(s.lookup(&h1).await.unwrap(), Some(r1.clone()));
        assert_eq!(s.get("key_two").await.unwrap(), Some((h2, r2b.clone())));
        assert_eq!(s.list().await.unwrap(), vec![r2b.clone(), r1.clone()]);
        let u = s.usage("key_one").await.unwrap();
        assert_eq!((u.total, u.last_used_at), (2, Some(Timestamp(7_000))));
    }

    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["keys"][1]["hash"], h1.to_hex());
    assert_eq!(doc["keys"][1]["id"], "key_one");
    for k in [&k1, &k2] {
        assert!(
            !text.contains(&k.expose_secret()[10..]),
            "the key's body is in the file"
        );
    }
}

#[test]
fn file_handles_in_several_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (file_store(&path), file_store(&path));
    let mut first = None;
    for i in 0..10 {
        for (name, s) in [("a", &a), ("b", &b)] {
            let (k, h) = new_key(Env::Test);
            let r = record(&format!("key_{name}{i}"), &k, i);
            first.get_or_insert((k.clone(), r.id.clone()));
            rt.block_on(s.insert(&h, &r)).unwrap();
        }
    }
    // b never saw key_a0 in memory; the write still finds it on disk.
    let (k, id) = first.unwrap();
    let err = rt
        .block_on(b.insert(&new_key(Env::Test).1, &record(&id, &k, 0)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    // Threads with their own handles, writing at the same time.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let path = path.clone();
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let s = file_store(&path);
                for i in 0..10 {
                    let (k, h) = new_key(Env::Live);
                    rt.block_on(s.insert(&h, &record(&format!("key_t{t}_{i}"), &k, 100 + i)))
                        .unwrap();
                    let d = delta("key_shared", &[("2026-01-01", 1)], i, "192.0.2.1");
                    rt.block_on(s.add_usage(&[d])).unwrap();
                }
            });
        }
    });
    let fresh = file_store(&path);
    assert_eq!(rt.block_on(fresh.list()).unwrap().len(), 60);
    assert_eq!(rt.block_on(fresh.usage("key_shared")).unwrap().total, 40);
    assert_eq!(
        dir_names(dir.path()),
        ["keys.json", "keys.json.lock"],
        "no temp file left behind"
    );
}

#[tokio::test]
async fn file_watcher_sees_another_process_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let gateway = file_store(&path);
    let cli = file_store(&path);
    let sink = Arc::new(Recorder::default());
    let handle = gateway.watch(sink.clone());
    assert_eq!(sink.last_up(), Some(true));

    let (k, h) = new_key(Env::Live);
    let r = record("key_w", &k, 1);
    cli.insert(&h, &r).await.unwrap();
    sink.wait(Duration::from_secs(1), "new key announced", |s| {
        s.count(&Seen::One(h)) == 1
    })
    .await;
    assert_eq!(gateway.lookup(&h).await.unwrap(), Some(r.clone()));

    let revoked = KeyRecord {
        revoked_at: Some(Timestamp(2)),
        ..r
    };
    let started = Instant::now();
    cli.replace(&revoked).await.unwrap();
    sink.wait(Duration::from_secs(1), "revocation announced", |s| {
        s.count(&Seen::One(h)) == 2
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(gateway.lookup(&h).await.unwrap(), Some(revoked.clone()));

    // A usage flush changes no record: it is picked up but flushes nothing.
    cli.add_usage(&[delta("key_w", &[("2026-01-01", 3)], 5, "192.0.2.1")])
        .await
        .unwrap();
    let reloaded = eventually_async(Duration::from_secs(1), || async {
        gateway.usage("key_w").await.unwrap().total == 3
    })
    .await;
    assert!(reloaded, "usage not reloaded");
    assert_eq!(sink.count(&Seen::One(h)), 2);
    assert_eq!(sink.count(&Seen::All), 0);

    // A broken edit is ignored: the last good keys stay in force...
    std::fs::write(&path, b"{ half an edit").unwrap();
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        assert_eq!(gateway.lookup(&h).await.unwrap(), Some(revoked.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and writers refuse to build on a file they cannot read.
    let err = cli.replace(&revoked).await.unwrap_err();
    assert!(err.to_string().contains("keys.json"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{ half an edit");

    // A deleted file is an empty store: its keys stop working.
    std::fs::remove_file(&path).unwrap();
    sink.wait(
        Duration::from_secs(1),
        "deleted file empties the store",
        |s| s.count(&Seen::One(h)) == 3,
    )
    .await;
    // Writes by the gateway's own process reach its sink too.
    let (k2, h2) = new_key(Env::Live);
    gateway
        .insert(&h2, &record("key_self", &k2, 3))
        .await
        .unwrap();
    sink.wait(Duration::from_secs(1), "own write announced", |s| {
        s.count(&Seen::One(h2)) == 1
    })
    .await;
    handle.abort();
}

#[test]
fn file_corrupt_or_unreadable_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, "{\"version\": 1,\n  \"keys\": [ {] }\n").unwrap();
    let err = FileStore::open(&path).err().expect("corrupt file accepted");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 2 column"), "{msg}");

    std::fs::write(&path, r#"{"version": 7, "keys": []}"#).unwrap();
    let msg = FileStore::open(&path)
        .err()
        .expect("future version accepted")
        .to_string();
    assert!(msg.contains("version 7"), "{msg}");

    let (k, h) = new_key(Env::Live);
    let mut entry = serde_json::to_value(record("key_x", &k, 1)).unwrap();
    entry["hash"] = h.to_hex().into();
    entry["revokd_at"] = "2026-01-01T00:00:00Z".into();
    let doc = serde_json::json!({"version": 1, "keys": [entry]});
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let msg = FileStore::open(&path)
        .err()
        .expect("misspelt field accepted")
        .to_string();
    assert!(
        msg.contains("revokd_at") && msg.contains("keys.json"),
        "{msg}"
    );

    let a_dir = dir.path().join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let msg = FileStore::open(&a_dir)
        .err()
        .expect("directory accepted")
        .to_string();
    assert!(msg.contains("a-directory"), "{msg}");
}
