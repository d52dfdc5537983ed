//! No POSIX lock loss: closing any descriptor of a file drops every POSIX lock the process holds on
//! it, so a watcher that opened and closed the db or `-shm` file would silently drop SQLite's
//! locks (lost commits, SIGBUS). With a live WAL connection in this process, starting, using and
//! stopping every backend leaves its SHARED lock on the db and its lock on `-shm` visible to an
//! `F_GETLK` probe from another process. The control arm shows the probe sees a real loss.
//!
//! The probe is a tiny Python program (`fcntl.fcntl(F_GETLK)`, no `unsafe` here).

use std::path::Path;
use std::process::Command;

use honker_wake::Hub;

use crate::{Db, commit, counter, deadline, for_each_backend};

/// SQLite's unix VFS: the shared-lock range of the db file (PENDING_BYTE + 2, 510 bytes) and the
/// "DMS" byte of `-shm` that every connection holds a read lock on while it has the WAL open.
const DB_SHARED: (u64, u64) = (0x4000_0002, 510);
const SHM_DMS: (u64, u64) = (128, 1);

const PROBE: &str = r#"
import fcntl, os, struct, sys
path, start, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
fmt = "hhqqi4x"  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid
req = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
l_type, _, _, _, pid = struct.unpack(fmt, fcntl.fcntl(fd, fcntl.F_GETLK, req))
print("unlocked" if l_type == fcntl.F_UNLCK else "locked by %d" % pid)
"#;

/// Whether another process would find a lock conflicting with a write lock on the range.
fn locked(path: &Path, (start, len): (u64, u64)) -> bool {
    let out = Command::new("python3")
        .args(["-c", PROBE])
        .arg(path)
        .arg(start.to_string())
        .arg(len.to_string())
        .output()
        .expect("python3 is needed for the F_GETLK probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(pid) = text.strip_prefix("locked by ") {
        let pid: u32 = pid.trim().parse().unwrap();
        assert_eq!(pid, std::process::id(), "a lock held by another process");
        true
    } else {
        assert_eq!(text.trim(), "unlocked");
        false
    }
}

fn shm(db: &Db) -> std::path::PathBuf {
    let mut p = db.path.clone().into_os_string();
    p.push("-shm");
    p.into()
}

fn assert_locks_held(db: &Db, when: &str) {
    assert!(
        locked(&db.path, DB_SHARED),
        "{when}: the db's SHARED lock is gone"
    );
    assert!(locked(&shm(db), SHM_DMS), "{when}: the -shm lock is gone");
}

#[test]
fn starting_using_and_stopping_any_backend_keeps_this_process_s_sqlite_locks() {
    for_each_backend(|backend| {
        let db = Db::new("wal");
        let app = db.connect();
        assert_eq!(counter(&app), 0);
        assert_locks_held(&db, "before any watcher");
        {
            let wake = crate::start(backend, &db.path);
            let seen = wake.epoch();
            commit(&db.connect());
            assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
            assert_locks_held(&db, "while the watcher runs");
            let shared = Hub::global().wake_for_with(&db.path, backend).unwrap();
            let seen = shared.epoch();
            commit(&app);
            assert!(shared.wait_past(seen, Some(deadline())).unwrap() > seen);
        }
        assert_locks_held(&db, "after the watchers stopped");
        assert_eq!(counter(&app), 2);
    });
}

/// Without this arm, a probe that always answers "locked" would pass the test above.
#[test]
fn control_closing_a_descriptor_of_the_db_drops_the_lock_and_the_probe_sees_it() {
    let db = Db::new("wal");
    let app = db.connect();
    assert_eq!(counter(&app), 0);
    assert_locks_held(&db, "before");
    // The bug the watchers avoid, done on purpose on this test's own file.
    #[allow(clippy::disallowed_methods)]
    drop(std::fs::File::open(&db.path).unwrap());
    assert!(
        !locked(&db.path, DB_SHARED),
        "the probe missed a dropped db lock"
    );
    #[allow(clippy::disallowed_methods)]
    drop(std::fs::File::open(shm(&db)).unwrap());
    assert!(
        !locked(&shm(&db), SHM_DMS),
        "the probe missed a dropped -shm lock"
    );
}
