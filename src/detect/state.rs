//! Saved detector state: what the engine learned, as rows a store keeps across restarts
//! (`Engine::snapshot` / `Engine::restore`).
//!
//! Every row's state is JSON with a format version, `{"v":1, ...}`. A detector's rows also
//! name its kind and window geometry (`"kind"`, `"window": [bucket_nanos, buckets]`): a
//! definition whose kind or window changed under the same id re-learns instead of reading
//! windows it would misplace. Per-key rows (entity = the key as text) hold the key's state
//! (`"state"`), its rank in the table's recency order among the keys of its `updated_at`
//! (`"rank"`, 0 = least recent; rows of older saves count over the whole table, which
//! sorts the same), and its open episode (`"episode"`); a detector's own row (entity `""`)
//! holds what it learned across keys. A table keyed otherwise than its episodes (tokens: by
//! a keyed hash of the token, episodes by its fingerprint) writes the episode key as the
//! entity and its own key as `"key"` (see `TableKey`).

use super::key::EntityKey;
use std::borrow::Cow;
use std::fmt::Display;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::episodes::{Episodes, SavedEpisode};
use crate::event::Timestamp;
use crate::window::{KeyTable, RateWindow, WindowSpec};

/// The state format written by `Engine::snapshot`; rows of any other version are skipped.
pub const STATE_VERSION: u32 = 1;

/// The `detector` of the engine's own row.
pub const ENGINE_ROW: &str = "_engine";

/// One row of saved state: the daemon stores rows in the `baselines` table
/// (detector TEXT, entity TEXT, state TEXT, updated_at_ns INTEGER, PRIMARY KEY (detector, entity)).
#[derive(Clone, Debug, PartialEq)]
pub struct StateRow {
    pub detector: String,
    /// The key as text (an IP address), or `""` for a detector's or the engine's own row.
    pub entity: String,
    /// JSON, `{"v":1, ...}`.
    pub state: String,
    /// Event time of the state. For keys: the key's last activity, raised to that of every
    /// less recently seen key of its table, so that newer means more recently seen.
    pub updated_at: Timestamp,
}

/// What `Engine::restore` made of the rows: `restored + skipped` is the number of rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rows loaded (a row whose key state fell beyond its table's capacity still counts
    /// when its open episode was loaded).
    pub restored: u64,
    /// Rows not loaded: unknown detector, other version or kind or window, JSON or entity
    /// that does not parse, a key state without its table key (`"key"`) or with one its
    /// table does not take, or a key beyond its table's capacity (the oldest go first).
    pub skipped: u64,
}

impl RestoreReport {
    pub(super) fn add(&mut self, other: RestoreReport) {
        self.restored += other.restored;
        self.skipped += other.skipped;
    }
}

/// What a detector's rows must say to be its own.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub kind: &'static str,
    pub window: WindowSpec,
}

impl Shape {
    fn geometry(&self) -> (i64, usize) {
        (self.window.bucket_nanos(), self.window.buckets())
    }
}

/// A table's key as rows write it: as the entity of its row, which is also its episode's key,
/// and, when the entity does not give the key back, as the row's `"key"`.
pub(super) trait TableKey<S>: Hash + Eq + Sized {
    /// The key of the table's episodes.
    type Entity: Hash + Eq + Ord + Clone + Display;
    fn entity(&self, state: &S) -> Self::Entity;
    /// The row's `"key"`; `None` when the entity gives the key back.
    fn saved(&self) -> Option<u64>;
    fn parse_entity(text: &str) -> Option<Self::Entity>;
    /// The table key of a row's state (which it binds to the entity); `None`: not a row of
    /// this table.
    fn restored(entity: &Self::Entity, saved: Option<u64>, state: &mut S) -> Option<Self>;
}

/// Most tables are keyed as their episodes are: the entity is the key.
impl<K: EntityKey, S> TableKey<S> for K {
    type Entity = K;

    fn entity(&self, _: &S) -> K {
        self.clone()
    }

    fn saved(&self) -> Option<u64> {
        None
    }

    /// Not `""`: that is a detector's own row (a route would parse from it).
    fn parse_entity(text: &str) -> Option<K> {
        (!text.is_empty()).then(|| text.parse().ok()).flatten()
    }

    fn restored(entity: &K, saved: Option<u64>, _: &mut S) -> Option<K> {
        saved.is_none().then(|| entity.clone())
    }
}

/// A row's JSON: `S` is the key's (or the detector's) state.
#[derive(Serialize, Deserialize)]
struct Row<'a, S> {
    v: u32,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    window: (i64, usize),
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rank: Option<u64>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    state: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    episode: Option<SavedEpisode>,
}

fn none<S>() -> Option<S> {
    None
}

pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    // Cannot fail: every map key is a string, and a non-finite float is written as null
    // (the row is then skipped on restore).
    serde_json::to_string(value).expect("state serializes to JSON")
}

fn row_json<S: Serialize>(
    shape: &Shape,
    key: Option<u64>,
    rank: Option<u64>,
    state: Option<&S>,
    episode: Option<SavedEpisode>,
) -> String {
    to_json(&Row {
        v: STATE_VERSION,
        kind: Cow::Borrowed(shape.kind),
        window: shape.geometry(),
        key,
        rank,
        state,
        episode,
    })
}

/// The row's JSON if it is of this version, kind and window.
fn parse_row<'a, S: Deserialize<'a>>(shape: &Shape, text: &'a str) -> Option<Row<'a, S>> {
    let row: Row<'a, S> = serde_json::from_str(text).ok()?;
    (row.v == STATE_VERSION && row.kind == shape.kind && row.window == shape.geometry())
        .then_some(row)
}

/// A detector's own row (entity `""`).
pub(super) fn detector_row<S: Serialize>(
    detector: &str,
    shape: &Shape,
    now: Timestamp,
    state: &S,
) -> StateRow {
    StateRow {
        detector: detector.to_owned(),
        entity: String::new(),
        state: row_json(shape, None, None, Some(state), None),
        updated_at: now,
    }
}

/// The state of a detector's own row, if it is one of `shape`.
pub(super) fn parse_detector_row<S: for<'de> Deserialize<'de>>(
    shape: &Shape,
    row: &StateRow,
) -> Option<S> {
    parse_row::<S>(shape, &row.state)?.state
}

/// One row per key of `keys` and per open episode: see the module's doc.
pub(super) fn snapshot_keys<K: TableKey<S>, S: Serialize>(
    detector: &str,
    shape: &Shape,
    keys: &KeyTable<K, S>,
    episodes: &Episodes<K::Entity>,
    last_active: impl Fn(&S) -> Timestamp,
    rows: &mut Vec<StateRow>,
) {
    let mut newest = Timestamp(i64::MIN);
    // Counted among the keys of the same `updated_at` only (restore sorts by both): a key
    // entering or leaving the table then changes no other key's row, so a daemon's save
    // writes the rows that changed, not every row.
    let mut rank = 0u64;
    // Entities whose episode went into a key's row (sorted below, for the orphans' lookup).
    let mut with_key = Vec::new();
    for (key, state) in keys.iter_oldest_first() {
        let entity = key.entity(state);
        let episode = episodes.saved(&entity);
        let before = newest;
        newest = newest.max(last_active(state));
        if let Some(episode) = &episode {
            newest = newest.max(episode.last_seen());
            with_key.push(entity.clone());
        }
        rank = if newest == before { rank + 1 } else { 0 };
        rows.push(StateRow {
            detector: detector.to_owned(),
            entity: entity.to_string(),
            state: row_json(shape, key.saved(), Some(rank), Some(state), episode),
            updated_at: newest,
        });
    }
    with_key.sort();
    episode_rows::<S, _>(detector, shape, episodes, &with_key, rows);
}

/// A row per open episode whose key is not among `with_key` (sorted): the table evicted
/// it, or the detector keeps no table.
fn episode_rows<S: Serialize, E: Hash + Eq + Ord + Clone + Display>(
    detector: &str,
    shape: &Shape,
    episodes: &Episodes<E>,
    with_key: &[E],
    rows: &mut Vec<StateRow>,
) {
    let mut orphans: Vec<&E> = episodes
        .open_keys()
        .filter(|key| with_key.binary_search(key).is_err())
        .collect();
    orphans.sort();
    for key in orphans {
        let Some(episode) = episodes.saved(key) else {
            continue;
        };
        rows.push(StateRow {
            detector: detector.to_owned(),
            entity: key.to_string(),
            updated_at: episode.last_seen(),
            state: row_json::<S>(shape, None, None, None, Some(episode)),
        });
    }
}

/// Rows of a detector whose only state is its open episodes.
pub(super) fn snapshot_episodes<K: EntityKey>(
    detector: &str,
    shape: &Shape,
    episodes: &Episodes<K>,
    rows: &mut Vec<StateRow>,
) {
    episode_rows::<(), K>(detector, shape, episodes, &[], rows);
}

/// Loads rows saved by `snapshot_episodes`.
pub(super) fn restore_episodes<K: EntityKey>(
    shape: &Shape,
    episodes: &mut Episodes<K>,
    rows: impl IntoIterator<Item = StateRow>,
) -> RestoreReport {
    // No table: a row with a key state is not one of these.
    let mut none = KeyTable::<K, serde::de::IgnoredAny>::new(std::num::NonZeroUsize::MIN);
    restore_keys(shape, &mut none, episodes, rows, |_| false)
}

/// Loads per-key rows saved by `snapshot_keys`: open episodes all, key states up to the
/// table's capacity, most recently seen first, in their saved recency order. `fits` says
/// whether a key's state can be one of this detector's.
pub(super) fn restore_keys<K: TableKey<S>, S: for<'de> Deserialize<'de>>(
    shape: &Shape,
    keys: &mut KeyTable<K, S>,
    episodes: &mut Episodes<K::Entity>,
    rows: impl IntoIterator<Item = StateRow>,
    fits: impl Fn(&S) -> bool,
) -> RestoreReport {
    let mut report = RestoreReport::default();
    // (updated_at, rank, key, state, the row's episode was loaded)
    let mut states: Vec<(Timestamp, u64, K, S, bool)> = Vec::new();
    for row in rows {
        let Some(read) = read_key_row::<K, S>(shape, &row, &fits) else {
            report.skipped += 1;
            continue;
        };
        let has_episode = read.episode.is_some();
        if let Some(episode) = read.episode {
            episodes.restore(read.entity, episode);
        }
        match read.state {
            Some((key, state)) => states.push((row.updated_at, read.rank, key, state, has_episode)),
            None => report.restored += 1,
        }
    }
    states.sort_by_key(|&(at, rank, ..)| (at, rank));
    let beyond = states.len().saturating_sub(keys.capacity());
    for (i, (_, _, key, state, has_episode)) in states.into_iter().enumerate() {
        if i < beyond {
            if has_episode {
                report.restored += 1;
            } else {
                report.skipped += 1;
            }
            continue;
        }
        keys.restore(key, state);
        report.restored += 1;
    }
    report
}

/// A per-key row as read back.
struct KeyRow<E, K, S> {
    entity: E,
    rank: u64,
    /// The table key and its state, if the row has one.
    state: Option<(K, S)>,
    episode: Option<SavedEpisode>,
}

/// `None` when the row is not one of this table's.
fn read_key_row<K: TableKey<S>, S: for<'de> Deserialize<'de>>(
    shape: &Shape,
    row: &StateRow,
    fits: impl Fn(&S) -> bool,
) -> Option<KeyRow<K::Entity, K, S>> {
    let entity = K::parse_entity(&row.entity)?;
    let parsed = parse_row::<S>(shape, &row.state)?;
    let state = match parsed.state {
        Some(mut state) if fits(&state) => {
            let key = K::restored(&entity, parsed.key, &mut state)?;
            Some((key, state))
        }
        Some(_) => return None,
        None => None,
    };
    Some(KeyRow {
        entity,
        rank: parsed.rank.unwrap_or(0),
        state,
        episode: parsed.episode,
    })
}

/// A key state made of windows of its detector's shape, the first counting every request.
pub(super) trait Windowed {
    fn windows(&self) -> [&RateWindow; 2];
}

/// `snapshot_keys` for a windowed key state: a key was last active in its first window's
/// newest bucket.
pub(super) fn snapshot_windowed<K: TableKey<S>, S: Windowed + Serialize>(
    detector: &str,
    shape: &Shape,
    keys: &KeyTable<K, S>,
    episodes: &Episodes<K::Entity>,
    rows: &mut Vec<StateRow>,
) {
    let spec = shape.window;
    let last_active = |state: &S| spec.bucket_start(state.windows()[0].head());
    snapshot_keys(detector, shape, keys, episodes, last_active, rows);
}

/// `restore_keys` for a windowed key state: a key fits when each of its windows does.
pub(super) fn restore_windowed<K: TableKey<S>, S: Windowed + for<'de> Deserialize<'de>>(
    shape: &Shape,
    keys: &mut KeyTable<K, S>,
    episodes: &mut Episodes<K::Entity>,
    rows: impl IntoIterator<Item = StateRow>,
) -> RestoreReport {
    let spec = shape.window;
    let fits = |state: &S| state.windows().iter().all(|window| window.fits(&spec));
    restore_keys(shape, keys, episodes, rows, fits)
}
