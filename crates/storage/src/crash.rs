//! A crash-simulating in-memory store, for testing that a repository survives the process
//! dying at any point.
//!
//! # The model
//!
//! [`CrashStorage`] holds only *durable* state: what a real backend would still have after
//! power loss. Every `write` and every `delete` call is one *mutating op*, numbered from 1 in
//! the order they reach the store (calls that end in an error such as `AlreadyExists` or
//! `NotFound` count too, so the numbering depends only on the sequence of calls). A write is
//! applied at its commit point (the rename of a local backend) all at once; a delete is
//! atomic. An acknowledged op is durable.
//!
//! [`CrashStorage::with_crash_at`]`(k)` makes the process "die" at op `k`: op `k` is not
//! applied and fails with [`StorageError::Crashed`], as does every later call of any kind
//! (reads and listings too, unless [`CrashStorage::with_reads_after_crash`] allows them:
//! the dead process cannot do anything). Everything acknowledged before op `k` stays.
//! [`CrashStorage::recover`] then returns a fresh [`MemoryStorage`] with exactly the durable
//! state, on which the repository is reopened.
//!
//! The usual test runs a workload once without a crash to learn the op count `N` from
//! [`CrashStorage::ops`], then runs it again for each `k` in `1..=N`, crashing at `k`, and
//! checks that the recovered repository is consistent.
//!
//! In *torn* mode ([`CrashStorage::with_torn_writes`]) a write at the crash point leaves a
//! partial temporary object behind, as a local backend's `.tmp-…` file would: it is kept in
//! [`CrashStorage::torn_writes`] for inspection but is never visible to `list` or `read` and
//! is not part of the recovered state. This checks the point of the model: a write happened
//! whole or not at all.
//!
//! This store must not be used outside tests and must never make a partial object visible.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::memory::{self, MemoryStorage, ObjectMap};
use crate::{Kind, ObjectInfo, Result, Storage, StorageError};

/// A partial object left by a write interrupted in torn mode (never visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornWrite {
    /// Kind of the object being written.
    pub kind: Kind,
    /// Name of the object being written.
    pub name: String,
    /// The bytes that reached the temporary file (a strict prefix of the data, when any).
    pub partial: Bytes,
}

#[derive(Debug, Default)]
struct State {
    objects: ObjectMap,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    torn: bool,
    reads_after_crash: bool,
    torn_writes: Vec<TornWrite>,
}

impl State {
    /// Starts a mutating op: counts it, or crashes here.
    fn begin_op(&mut self) -> Result<()> {
        if self.crashed {
            return Err(StorageError::Crashed);
        }
        let number = self.ops + 1;
        if self.crash_at.is_some_and(|k| number >= k) {
            self.crashed = true;
            return Err(StorageError::Crashed);
        }
        self.ops = number;
        Ok(())
    }

    fn check_read(&self) -> Result<()> {
        if self.crashed && !self.reads_after_crash {
            Err(StorageError::Crashed)
        } else {
            Ok(())
        }
    }
}

/// An in-memory store that models durability and can crash at a chosen mutating op; clones
/// share the same state.
#[derive(Clone, Default)]
pub struct CrashStorage {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for CrashStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("CrashStorage")
            .field("objects", &s.objects.len())
            .field("ops", &s.ops)
            .field("crash_at", &s.crash_at)
            .field("crashed", &s.crashed)
            .field("torn", &s.torn)
            .finish()
    }
}

impl CrashStorage {
    /// An empty store that never crashes (use it to count a workload's ops).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that crashes at mutating op `k` (1-based): op `k` and everything after
    /// it fail with [`StorageError::Crashed`] and are not applied. `k == 0` means crashed
    /// from the start.
    #[must_use]
    pub fn with_crash_at(k: u64) -> Self {
        Self::from_memory(&MemoryStorage::new(), Some(k))
    }

    /// A store starting from the objects of `memory` (e.g. a state recovered after an earlier
    /// crash), crashing at op `crash_at` counted from now, if given.
    #[must_use]
    pub fn from_memory(memory: &MemoryStorage, crash_at: Option<u64>) -> Self {
        let state = State {
            objects: memory.snapshot_objects(),
            crash_at,
            crashed: crash_at == Some(0),
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Torn mode: a write at the crash point leaves an invisible partial object (see
    /// [`CrashStorage::torn_writes`]).
    #[must_use]
    pub fn with_torn_writes(self, torn: bool) -> Self {
        self.lock().torn = torn;
        self
    }

    /// Lets `list`, `read` and `read_range` keep working after the crash (they fail with
    /// [`StorageError::Crashed`] by default).
    #[must_use]
    pub fn with_reads_after_crash(self, allow: bool) -> Self {
        self.lock().reads_after_crash = allow;
        self
    }

    /// Mutating ops performed (acknowledged or failed with an ordinary error), not counting
    /// the one that crashed.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the simulated crash has happened.
    #[must_use]
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Partial objects left by writes interrupted in torn mode.
    #[must_use]
    pub fn torn_writes(&self) -> Vec<TornWrite> {
        self.lock().torn_writes.clone()
    }

    /// A fresh [`MemoryStorage`] holding exactly the durable state (crashed or not).
    #[must_use]
    pub fn recover(&self) -> MemoryStorage {
        MemoryStorage::from_objects(self.lock().objects.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is complete before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Storage for CrashStorage {
    fn location(&self) -> String {
        "crash:".to_owned()
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        let state = self.lock();
        state.check_read()?;
        Ok(memory::list_map(&state.objects, kind))
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        let state = self.lock();
        state.check_read()?;
        memory::read_map(&state.objects, kind, name)
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        let state = self.lock();
        state.check_read()?;
        memory::read_range_map(&state.objects, kind, name, offset, length)
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        let mut state = self.lock();
        let was_crashed = state.crashed;
        if let Err(e) = state.begin_op() {
            if !was_crashed && state.torn {
                // The temp file got part of the data; the rename never happened.
                let partial = data.slice(..data.len() / 2);
                state.torn_writes.push(TornWrite {
                    kind,
                    name: name.to_owned(),
                    partial,
                });
            }
            return Err(e);
        }
        memory::write_map(&mut state.objects, kind, name, data)
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let mut state = self.lock();
        state.begin_op()?;
        memory::delete_map(&mut state.objects, kind, name)
    }

    async fn create(&self) -> Result<()> {
        let state = self.lock();
        if state.crashed {
            return Err(StorageError::Crashed);
        }
        memory::create_map(&state.objects)
    }
}
