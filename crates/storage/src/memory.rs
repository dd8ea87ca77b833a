//! In-memory object storage, for tests and for reopening a repository after a simulated crash.
//!
//! [`MemoryStorage`] keeps every object in a shared map behind a mutex; clones are handles to
//! the same map, so a test can keep one handle to inspect or corrupt what the engine wrote
//! through another. It keeps the same semantics as every other backend (write-once, sorted
//! listing, `NotFound` on missing objects, names checked with [`check_name`]).
//!
//! It must not be used to hold real backups (nothing is persisted) and must not grow any
//! behaviour the other backends lack: the raw helpers (`put_raw`, `remove_raw`,
//! `snapshot_objects`) bypass the trait on purpose and exist only for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Kind, ObjectInfo, ObjectWriter, Result, Storage, StorageError, check_name};

/// The map type a [`MemoryStorage`] holds: object bytes by kind and name.
pub type ObjectMap = BTreeMap<(Kind, String), Bytes>;

/// An in-memory object store; cheap to clone, clones share the same objects.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    objects: Arc<Mutex<ObjectMap>>,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print object contents: they can be megabytes.
        f.debug_struct("MemoryStorage")
            .field("objects", &self.lock().len())
            .finish()
    }
}

impl MemoryStorage {
    /// Creates an empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a store holding exactly `objects` (names are not checked).
    #[must_use]
    pub fn from_objects(objects: ObjectMap) -> Self {
        Self {
            objects: Arc::new(Mutex::new(objects)),
        }
    }

    /// A copy of every object currently stored, by kind and name.
    #[must_use]
    pub fn snapshot_objects(&self) -> ObjectMap {
        self.lock().clone()
    }

    /// Stores `data` under `kind`/`name`, replacing any existing object and without checking
    /// the name: for tests that plant corruption. Returns the previous object, if any.
    pub fn put_raw(&self, kind: Kind, name: &str, data: Bytes) -> Option<Bytes> {
        self.lock().insert((kind, name.to_owned()), data)
    }

    /// Removes an object without any check; returns it if it existed.
    pub fn remove_raw(&self, kind: Kind, name: &str) -> Option<Bytes> {
        self.lock().remove(&(kind, name.to_owned()))
    }

    /// Number of objects stored, all kinds together.
    #[must_use]
    pub fn object_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, ObjectMap> {
        lock(&self.objects)
    }
}

/// Lists the objects of one kind in a map, sorted by name (shared with the crash store).
pub(crate) fn list_map(objects: &ObjectMap, kind: Kind) -> Vec<ObjectInfo> {
    objects
        .range((kind, String::new())..)
        .take_while(|((k, _), _)| *k == kind)
        .map(|((_, name), data)| ObjectInfo {
            name: name.clone(),
            size: data.len() as u64,
        })
        .collect()
}

/// Reads one object from a map (shared with the crash store).
pub(crate) fn read_map(objects: &ObjectMap, kind: Kind, name: &str) -> Result<Bytes> {
    check_name(name)?;
    objects
        .get(&(kind, name.to_owned()))
        .cloned()
        .ok_or_else(|| StorageError::NotFound {
            kind,
            name: name.to_owned(),
        })
}

/// Reads a range of one object from a map (shared with the crash store).
pub(crate) fn read_range_map(
    objects: &ObjectMap,
    kind: Kind,
    name: &str,
    offset: u64,
    length: u64,
) -> Result<Bytes> {
    let data = read_map(objects, kind, name)?;
    slice_range(&data, kind, name, offset, length)
}

/// Cuts `offset..offset+length` out of `data`, or fails with [`StorageError::OutOfRange`].
pub(crate) fn slice_range(
    data: &Bytes,
    kind: Kind,
    name: &str,
    offset: u64,
    length: u64,
) -> Result<Bytes> {
    let size = data.len() as u64;
    let out_of_range = || StorageError::OutOfRange {
        kind,
        name: name.to_owned(),
        offset,
        length,
        size,
    };
    let end = offset.checked_add(length).ok_or_else(out_of_range)?;
    if end > size {
        return Err(out_of_range());
    }
    let start = usize::try_from(offset).map_err(|_| out_of_range())?;
    let end = usize::try_from(end).map_err(|_| out_of_range())?;
    Ok(data.slice(start..end))
}

/// Writes one object into a map, write-once (shared with the crash store).
pub(crate) fn write_map(
    objects: &mut ObjectMap,
    kind: Kind,
    name: &str,
    data: Bytes,
) -> Result<()> {
    check_name(name)?;
    match objects.entry((kind, name.to_owned())) {
        std::collections::btree_map::Entry::Occupied(_) => Err(StorageError::AlreadyExists {
            kind,
            name: name.to_owned(),
        }),
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(data);
            Ok(())
        }
    }
}

/// Deletes one object from a map (shared with the crash store).
pub(crate) fn delete_map(objects: &mut ObjectMap, kind: Kind, name: &str) -> Result<()> {
    check_name(name)?;
    objects
        .remove(&(kind, name.to_owned()))
        .map(|_| ())
        .ok_or_else(|| StorageError::NotFound {
            kind,
            name: name.to_owned(),
        })
}

/// The name of the single repository configuration object.
pub(crate) const CONFIG_NAME: &str = "config";

/// `create` on a map: fails when a config exists, otherwise does nothing.
pub(crate) fn create_map(objects: &ObjectMap) -> Result<()> {
    if objects.contains_key(&(Kind::Config, CONFIG_NAME.to_owned())) {
        return Err(StorageError::AlreadyExists {
            kind: Kind::Config,
            name: CONFIG_NAME.to_owned(),
        });
    }
    Ok(())
}

#[async_trait]
impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory:".to_owned()
    }

    async fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        Ok(list_map(&self.lock(), kind))
    }

    async fn read(&self, kind: Kind, name: &str) -> Result<Bytes> {
        read_map(&self.lock(), kind, name)
    }

    async fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Bytes> {
        read_range_map(&self.lock(), kind, name, offset, length)
    }

    async fn write(&self, kind: Kind, name: &str, data: Bytes) -> Result<()> {
        write_map(&mut self.lock(), kind, name, data)
    }

    fn object_writer(&self, kind: Kind) -> Option<Box<dyn ObjectWriter>> {
        Some(Box::new(MemoryObjectWriter {
            objects: Arc::clone(&self.objects),
            kind,
            data: Vec::new(),
        }))
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        delete_map(&mut self.lock(), kind, name)
    }

    async fn create(&self) -> Result<()> {
        create_map(&self.lock())
    }
}

fn lock(objects: &Mutex<ObjectMap>) -> MutexGuard<'_, ObjectMap> {
    // A panic while holding the lock cannot leave the map half-updated (every change is
    // one insert or remove), so a poisoned lock is safe to keep using.
    objects.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An object gathered in memory and added to the map whole at its commit.
struct MemoryObjectWriter {
    objects: Arc<Mutex<ObjectMap>>,
    kind: Kind,
    data: Vec<u8>,
}

impl ObjectWriter for MemoryObjectWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        write_map(
            &mut lock(&self.objects),
            self.kind,
            name,
            Bytes::from(self.data),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raw_helpers_bypass_write_once() {
        let m = MemoryStorage::new();
        m.write(Kind::Pack, "ab", Bytes::from_static(b"one"))
            .await
            .unwrap();
        let old = m.put_raw(Kind::Pack, "ab", Bytes::from_static(b"two"));
        assert_eq!(old, Some(Bytes::from_static(b"one")));
        assert_eq!(
            m.read(Kind::Pack, "ab").await.unwrap(),
            Bytes::from_static(b"two")
        );
        assert_eq!(m.object_count(), 1);
        let snap = m.snapshot_objects();
        assert_eq!(snap.len(), 1);
        assert!(m.remove_raw(Kind::Pack, "ab").is_some());
        assert!(m.remove_raw(Kind::Pack, "ab").is_none());
        assert!(m.read(Kind::Pack, "ab").await.unwrap_err().is_not_found());
        // The snapshot is a copy, not a view.
        assert_eq!(snap.len(), 1);
        assert_eq!(MemoryStorage::from_objects(snap).object_count(), 1);
    }

    #[test]
    fn debug_does_not_print_contents() {
        let m = MemoryStorage::new();
        m.put_raw(Kind::Key, "k", Bytes::from_static(b"secret-bytes"));
        let text = format!("{m:?}");
        assert!(!text.contains("secret"), "{text}");
    }
}
