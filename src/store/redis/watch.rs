//! The invalidation watcher: the task that follows the channel, forwards
//! each message to the cache, checks every second that both connections
//! are alive (rebuilding or re-resolving the command connection when they
//! are not), tells the sink when the store goes down or comes back, and
//! resubscribes with backoff. It holds only a weak handle, so dropping the
//! store ends it.

use std::sync::Weak;
use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::Value;
use futures_util::StreamExt;

use super::sentinel::is_master_role;
use super::subscribe::PROBE_PREFIX;
use super::{Inner, RedisStore, INVALIDATE_CHANNEL};
use crate::keys::KeyHash;
use crate::keys::Timestamp;
use crate::store::InvalidationSink;

/// How often the watcher proves both connections are alive.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// Consecutive command timeouts after which the command connection is
/// presumed half-open and replaced (timeouts alone never make redis-rs
/// reconnect).
const REBUILD_AFTER_TIMEOUTS: u32 = 3;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl RedisStore {
    /// Liveness of the command connection, as the watcher reports it. With
    /// Sentinel the question is `ROLE`: a server that answers but is no
    /// longer the master (demoted after a failover) counts as failed. With
    /// Cluster it is `EXISTS` on the id set, which the master of the one
    /// slot holding every key answers (`PING` would ask every master).
    async fn ping(&self) -> Result<(), Liveness> {
        let mut conn = self.conn();
        let cmd = if self.inner.sentinel.is_some() {
            "ROLE"
        } else if self.inner.cluster.is_some() {
            "EXISTS"
        } else {
            "PING"
        };
        let mut question = ::redis::cmd(cmd);
        if cmd == "EXISTS" {
            question.arg(self.inner.schema.ids);
        }
        match tokio::time::timeout(self.inner.timeout, question.query_async::<Value>(&mut conn))
            .await
        {
            Ok(Ok(v)) if cmd == "ROLE" && !is_master_role(&v) => Err(Liveness::Failed(format!(
                "redis {}: the server is no longer the master",
                self.inner.shown_url
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Liveness::Failed(self.unavailable(cmd, &e).to_string())),
            Err(_) => Err(Liveness::TimedOut),
        }
    }
}

fn upgrade(store: &Weak<Inner>) -> Option<RedisStore> {
    store.upgrade().map(|inner| RedisStore { inner })
}

/// Subscribes, follows, and re-subscribes until the store is dropped. Every
/// (re)subscription flushes the sink, because messages sent while nobody
/// listened are lost; losing the channel does not flush, so cached keys keep
/// serving through an outage. While the channel is down the store counts as
/// down only if it does not answer a `PING` either.
pub(super) async fn watch_loop(weak: Weak<Inner>, sink: &dyn InvalidationSink) {
    let mut backoff = Backoff::new();
    let mut up = State::default();
    // One warning per run of failed subscriptions.
    let mut warned = false;
    // Whether the last subscription failed or was lost: with Sentinel, the
    // master is then looked up again before subscribing.
    let mut lost = false;
    loop {
        let Some(store) = upgrade(&weak) else {
            return;
        };
        let url = store.inner.shown_url.clone();
        if lost {
            store.refresh(false).await;
        }
        lost = true;
        let generation = store.generation();
        let subscribed = store.subscribe().await;
        // Not held while following or sleeping: dropping the store ends us.
        drop(store);
        match subscribed {
            Ok((pubsub_sink, stream)) => {
                backoff.reset();
                warned = false;
                sink.invalidate_all();
                up.force(sink, true);
                tracing::info!(%url, "listening for key invalidations");
                match follow(&weak, pubsub_sink, stream, sink, &mut up, generation).await {
                    Some(why) => tracing::warn!(
                        %url,
                        "lost the invalidation channel ({why}); reconnecting"
                    ),
                    None => return,
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(%url, "cannot subscribe to {INVALIDATE_CHANNEL}: {e}");
                    warned = true;
                }
            }
        }
        // Without the channel, whether the store is up is for the command
        // connection to say. A store that answers while the channel is gone
        // (an ACL without channel rights, a proxy without pub/sub) stays up:
        // cached records are then trusted for `cache.ttl` and re-read from
        // the store after that, never served stale as in an outage.
        let Some(store) = upgrade(&weak) else {
            return;
        };
        let answering = store.ping().await.is_ok();
        drop(store);
        up.set(sink, answering);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Forwards messages until the subscription is lost (returns why) or the
/// store is dropped (returns `None`).
async fn follow(
    weak: &Weak<Inner>,
    mut pubsub_sink: PubSubSink,
    mut stream: PubSubStream,
    sink: &dyn InvalidationSink,
    up: &mut State,
    generation: u64,
) -> Option<String> {
    let start = tokio::time::Instant::now() + LIVENESS_EVERY;
    let mut tick = tokio::time::interval_at(start, LIVENESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timeouts = 0u32;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => forward(msg.get_payload_bytes(), sink),
                None => return Some("connection closed".into()),
            },
            _ = tick.tick() => {
                let store = upgrade(weak)?;
                if let Err(why) = store.check_subscription(&mut pubsub_sink).await {
                    return Some(why);
                }
                match store.ping().await {
                    Ok(()) => {
                        timeouts = 0;
                        up.set(sink, true);
                    }
                    Err(failure) => {
                        if up.get() != Some(false) {
                            tracing::warn!("{failure}");
                        }
                        up.set(sink, false);
                        let mut rebuild = false;
                        if matches!(failure, Liveness::TimedOut) {
                            timeouts += 1;
                            if timeouts >= REBUILD_AFTER_TIMEOUTS {
                                timeouts = 0;
                                rebuild = true;
                            }
                        }
                        // With Sentinel any failure asks where the master
                        // is now; without, only a half-open connection is
                        // replaced (redis-rs reconnects by itself otherwise).
                        if rebuild || store.inner.sentinel.is_some() {
                            store.refresh(rebuild).await;
                        }
                    }
                }
                if store.generation() != generation {
                    return Some("the redis master moved".into());
                }
            }
        }
    }
}

/// Why the command connection looks dead.
enum Liveness {
    TimedOut,
    Failed(String),
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Liveness::TimedOut => f.write_str("redis PING timed out"),
            Liveness::Failed(msg) => f.write_str(msg),
        }
    }
}

/// The last `store_up` told to the sink, so it hears transitions, not noise.
#[derive(Default)]
struct State(Option<bool>);

impl State {
    fn get(&self) -> Option<bool> {
        self.0
    }

    fn set(&mut self, sink: &dyn InvalidationSink, up: bool) {
        if self.0 != Some(up) {
            self.force(sink, up);
        }
    }

    fn force(&mut self, sink: &dyn InvalidationSink, up: bool) {
        self.0 = Some(up);
        sink.store_up(up);
    }
}

/// Applies one channel message: `<hash hex>`, `<hash hex> <unix ms>` or
/// `*`. Anything unrecognised flushes everything: a message we cannot read
/// may have been about any key.
fn forward(payload: &[u8], sink: &dyn InvalidationSink) {
    if payload == b"*" {
        sink.invalidate_all();
        return;
    }
    if payload.starts_with(PROBE_PREFIX.as_bytes()) {
        // Another gateway proving its subscription.
        return;
    }
    match parse_message(payload) {
        Some((hash, None)) => sink.invalidate(&hash),
        Some((hash, Some(written_at))) => sink.invalidate_written_at(&hash, written_at),
        None => {
            // The payload is not logged: it could be anything, even a key.
            tracing::warn!(
                len = payload.len(),
                "unreadable message on {INVALIDATE_CHANNEL}; flushing every cached key"
            );
            sink.invalidate_all();
        }
    }
}

/// A hash message, with its write time when it carries one.
fn parse_message(payload: &[u8]) -> Option<(KeyHash, Option<Timestamp>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (hex, written_at) = match text.split_once(' ') {
        Some((hex, ms)) => {
            let ms = ms
                .parse::<u64>()
                .ok()
                .and_then(|ms| i64::try_from(ms).ok())?;
            (hex, Some(Timestamp(ms)))
        }
        None => (text, None),
    };
    Some((KeyHash::from_hex(&hex.to_ascii_lowercase())?, written_at))
}

/// Exponential backoff with jitter, 50 ms doubling to 2 s, so a fleet of
/// gateways does not reconnect in lockstep after an outage.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Between half and all of the base delay.
        let half = base / 2;
        half + half.mul_f64(random_unit())
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::redis::subscribe::probe_message;

    #[test]
    fn messages_are_forwarded_or_flush() {
        use parking_lot::Mutex;
        #[derive(Default)]
        struct Rec(Mutex<Vec<String>>);
        impl InvalidationSink for Rec {
            fn invalidate(&self, hash: &KeyHash) {
                self.0.lock().push(hash.to_hex());
            }
            fn invalidate_written_at(&self, hash: &KeyHash, at: Timestamp) {
                self.0.lock().push(format!("{}@{}", hash.to_hex(), at.0));
            }
            fn invalidate_all(&self) {
                self.0.lock().push("*".into());
            }
            fn store_up(&self, _: bool) {}
        }
        let rec = Rec::default();
        let hex = "ab".repeat(32);
        forward(hex.as_bytes(), &rec);
        forward(hex.to_ascii_uppercase().as_bytes(), &rec);
        forward(b"*", &rec);
        forward(b"nonsense", &rec);
        forward(b"\xff", &rec);
        assert_eq!(
            *rec.0.lock(),
            vec![hex.clone(), hex.clone(), "*".into(), "*".into(), "*".into()]
        );
        rec.0.lock().clear();
        forward(format!("{hex} 1700000000123").as_bytes(), &rec);
        for bad in ["-5", "", "12x", "1 2", "99999999999999999999"] {
            forward(format!("{hex} {bad}").as_bytes(), &rec);
        }
        forward(format!("{} 1", &hex[1..]).as_bytes(), &rec);
        forward(probe_message().as_bytes(), &rec);
        let mut want = vec![format!("{hex}@1700000000123")];
        want.extend(std::iter::repeat_n("*".to_owned(), 6));
        assert_eq!(*rec.0.lock(), want);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..10 {
            b.next_delay();
        }
        let late = b.next_delay();
        assert!(late >= BACKOFF_MAX / 2 && late <= BACKOFF_MAX);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
