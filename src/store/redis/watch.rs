//! The change-feed watcher: two loops for one store, ended when the store
//! is dropped (they hold only a weak handle).
//!
//! - The feed loop opens a connection of its own, proves this user's rights
//!   (`feed.rs`), then reads the feed with a bounded blocking `XREAD` from
//!   the last entry id it applied, forwarding each entry to the cache. When
//!   the connection fails or goes silent (no answer within the read
//!   deadline) it is replaced, and reading resumes from that id: nothing is
//!   missed and nothing is flushed. Only a feed trimmed past that id, or
//!   one that is not the stream it read (lost, or older than its
//!   position), flushes the cache, counted by reason.
//! - The liveness loop asks the command connection every second whether
//!   the store answers (rebuilding a half-open connection, following a
//!   Sentinel master) and tells the sink when the store goes down or up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::{Duration, Instant};

use ::redis::Value;

use super::conn::Conn;
use super::feed::{Change, EntryId, FeedInfo, COUNT};
use super::sentinel::is_master_role;
use super::{Inner, RedisStore};
use crate::store::{FlushReason, InvalidationSink};

/// How often the watcher proves the command connection is alive.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// Consecutive command timeouts after which the command connection is
/// presumed half-open and replaced (timeouts alone never make redis-rs
/// reconnect).
const REBUILD_AFTER_TIMEOUTS: u32 = 3;

/// After this long between two reads (the process stalled), the feed is
/// checked for a trim before the next read.
const STALL: Duration = Duration::from_secs(1);

// Reconnecting is cheap (one connection per gateway), and every moment
// without the feed is a moment a revoke waits: the cap stays well under
// the contract's one second.
const BACKOFF_MIN: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(400);

impl RedisStore {
    /// Liveness of the command connection, as the watcher reports it. With
    /// Sentinel the question is `ROLE`: a server that answers but is no
    /// longer the master (demoted after a failover) counts as failed. With
    /// Cluster it is `EXISTS` on the id set, which the master of the one
    /// slot holding every key answers (`PING` would ask every master).
    async fn ping(&self) -> Result<(), Liveness> {
        let mut conn = self.conn();
        let cmd = if self.inner.link.is_sentinel() {
            "ROLE"
        } else if self.inner.link.is_cluster() {
            "EXISTS"
        } else {
            "PING"
        };
        let mut question = ::redis::cmd(cmd);
        if cmd == "EXISTS" {
            question.arg(self.inner.schema.ids);
        }
        match tokio::time::timeout(
            self.inner.link.timeout,
            question.query_async::<Value>(&mut conn),
        )
        .await
        {
            Ok(Ok(v)) if cmd == "ROLE" && !is_master_role(&v) => Err(Liveness::Failed(format!(
                "redis {}: the server is no longer the master",
                self.inner.link.shown_url
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Liveness::Failed(
                self.inner.link.unavailable(cmd, &e).to_string(),
            )),
            Err(_) => Err(Liveness::TimedOut),
        }
    }
}

fn upgrade(store: &Weak<Inner>) -> Option<RedisStore> {
    store.upgrade().map(|inner| RedisStore { inner })
}

/// Follows the feed and watches the store until the store is dropped.
pub(super) async fn watch_loop(weak: Weak<Inner>, sink: &dyn InvalidationSink) {
    // Set by the feed loop on every (re)connection, so the liveness loop
    // re-checks the usage right off the feed's path (a hung command
    // connection must not delay reading the feed).
    let recheck_usage = AtomicBool::new(true);
    tokio::join!(
        liveness_loop(weak.clone(), sink, &recheck_usage),
        feed_loop(weak, sink, &recheck_usage)
    );
}

/// Where this gateway is in the feed: `None` until the first connection.
type Position = Option<EntryId>;

/// Connects, proves rights, catches up, follows; on any failure reports
/// why (once per distinct reason in the log, always to the sink), waits a
/// jittered backoff and starts again from the same position.
async fn feed_loop(weak: Weak<Inner>, sink: &dyn InvalidationSink, recheck_usage: &AtomicBool) {
    let mut pos: Position = None;
    let mut backoff = Backoff::new();
    let mut reported: Option<String> = None;
    loop {
        let Some(store) = upgrade(&weak) else {
            return;
        };
        let url = store.inner.link.shown_url.clone();
        let generation = store.inner.link.generation();
        let why = match store.open_feed().await {
            Err(e) => e,
            Ok(mut conn) => match store.check_rights(&mut conn).await {
                Err(e) => e,
                Ok(info) => {
                    catch_up(&mut pos, info, sink);
                    sink.feed_state(None);
                    if reported.take().is_some() {
                        tracing::info!(%url, "change feed back; resumed at {}", pos.unwrap_or_default());
                    } else {
                        tracing::info!(%url, "following the change feed from {}", pos.unwrap_or_default());
                    }
                    backoff.reset();
                    recheck_usage.store(true, Ordering::Relaxed);
                    drop(store);
                    match follow(&weak, conn, &mut pos, sink, generation).await {
                        Some(why) => why,
                        None => return,
                    }
                }
            },
        };
        if reported.as_deref() != Some(why.as_str()) {
            tracing::warn!(%url, "change feed: {why}; changes cannot reach this gateway until it is back");
        }
        sink.feed_state(Some(&why));
        reported = Some(why);
        if let Some(store) = upgrade(&weak) {
            if store.inner.link.is_sentinel() {
                store.inner.link.refresh(false).await;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Puts `pos` where reading can safely go on, given what `XINFO STREAM`
/// says (`None`: no feed yet). The first time, the cache is emptied (it may
/// hold records read before the position was known) and reading starts at
/// the newest entry. After that, the position stands unless the entries
/// after it are gone (trimmed) or the stream is not the one read before.
fn catch_up(pos: &mut Position, info: Option<FeedInfo>, sink: &dyn InvalidationSink) {
    let newest = info.map_or(EntryId::default(), |i| i.last);
    let Some(at) = *pos else {
        sink.invalidate_all();
        *pos = Some(newest);
        return;
    };
    let reason = match info {
        None if at != EntryId::default() => Some(FlushReason::Reset),
        None => None,
        Some(i) if i.last < at => Some(FlushReason::Reset),
        Some(i) if i.trimmed_past(at) => Some(FlushReason::Trimmed),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        tracing::warn!(
            "the change feed {} this gateway's position {at}; flushing every cached key",
            match reason {
                FlushReason::Trimmed => "was trimmed past",
                _ => "is older than",
            }
        );
        sink.flush(reason);
        *pos = Some(newest);
    }
}

/// Reads and applies entries until the connection fails or goes silent, or
/// the master moves (returns why), or the store is dropped (`None`).
async fn follow(
    weak: &Weak<Inner>,
    mut conn: Conn,
    pos: &mut Position,
    sink: &dyn InvalidationSink,
    generation: u64,
) -> Option<String> {
    let mut last_read = Instant::now();
    let mut full = false;
    loop {
        let store = upgrade(weak)?;
        if store.inner.link.generation() != generation {
            return Some("the redis master moved".into());
        }
        // Caught up at the last read and read again at once: no more than
        // the feed's length can have been written since, so nothing unread
        // was trimmed. Behind (a full batch) or stalled: check first.
        if full || last_read.elapsed() > STALL {
            let info = match store.feed_info(&mut conn).await {
                Ok(info) => info,
                Err(why) => return Some(why),
            };
            catch_up(pos, info, sink);
        }
        let read = store.read_feed(&mut conn, pos.unwrap_or_default()).await;
        drop(store);
        last_read = Instant::now();
        let entries = match read {
            Ok(entries) => entries,
            Err(why) => return Some(why),
        };
        full = entries.len() >= COUNT;
        for entry in entries {
            apply(entry.change, sink);
            *pos = Some(entry.id);
        }
    }
}

fn apply(change: Change, sink: &dyn InvalidationSink) {
    match change {
        Change::One(hash, None) => sink.invalidate(&hash),
        Change::One(hash, Some(at)) => sink.invalidate_written_at(&hash, at),
        Change::All => sink.flush(FlushReason::Requested),
        Change::Unreadable => {
            // The entry is not logged: it could hold anything, even a key.
            tracing::warn!("unreadable change feed entry; flushing every cached key");
            sink.flush(FlushReason::Unreadable);
        }
    }
}

/// Every second: does the command connection answer? Tells the sink on
/// transitions; after each feed (re)connection, checks the usage right; replaces a connection that only times out; with Sentinel,
/// looks the master up again on any failure.
async fn liveness_loop(weak: Weak<Inner>, sink: &dyn InvalidationSink, recheck_usage: &AtomicBool) {
    let mut up = State::default();
    let mut timeouts = 0u32;
    let mut tick = tokio::time::interval(LIVENESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = upgrade(&weak) else {
            return;
        };
        match store.ping().await {
            Ok(()) => {
                timeouts = 0;
                up.set(sink, true);
                if recheck_usage.swap(false, Ordering::Relaxed) {
                    let usage = store.check_usage_right().await.err();
                    if let Some(problem) = &usage {
                        tracing::error!(url = %store.inner.link.shown_url, "{problem}");
                    }
                    sink.usage_state(usage.as_deref());
                }
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
                // With Sentinel any failure asks where the master is now;
                // without, only a half-open connection is replaced
                // (redis-rs reconnects by itself otherwise).
                if rebuild || store.inner.link.is_sentinel() {
                    store.inner.link.refresh(rebuild).await;
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
