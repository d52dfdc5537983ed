//! The identity of a database file as `stat` sees it: how watchers notice a replaced or deleted
//! file and how the Hub keys its watchers, without ever opening the file.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Which file a path names right now: device, inode and (where the file system records it) the
/// birth time.
///
/// The birth time guards against inode reuse: a file deleted and recreated can get the same inode
/// number back, and a watcher still reading the deleted one must not be mistaken for a watcher of
/// the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    born: Option<SystemTime>,
}

impl FileId {
    /// `stat` the path (following symlinks). Never opens the file: closing a descriptor of the
    /// database would drop the POSIX locks SQLite holds on it in this process.
    pub(crate) fn of(path: &Path) -> io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        let (dev, ino) = dev_ino(&meta);
        Ok(FileId {
            dev,
            ino,
            born: meta.created().ok(),
        })
    }
}

#[cfg(unix)]
fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    // No portable inode outside Unix: the size-independent creation time stands in for it, so a
    // replaced file still looks different.
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    (0, born)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_file_has_a_different_id_and_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        let before = FileId::of(&a).unwrap();
        assert_eq!(before, FileId::of(&a).unwrap());
        std::fs::rename(&b, &a).unwrap();
        assert_ne!(before, FileId::of(&a).unwrap());
        std::fs::remove_file(&a).unwrap();
        assert_eq!(FileId::of(&a).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
