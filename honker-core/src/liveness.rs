//! Same-host liveness of claiming processes: each process that claims jobs from a database file
//! holds an exclusive lock on a small file of its own beside the database, and names it in its
//! claims (`honker_jobs.holder`). The kernel releases the lock when the process dies, however it
//! dies, so a claimer that finds running jobs whose holder's lock is free knows the holder is dead
//! and can take them back at once instead of at lease expiry.
//!
//! - The lock is `flock(LOCK_EX)` on `<db file name>-honker-live-<holder>` in the database's
//!   directory, never on the database or `-shm` (closing any descriptor of those would drop
//!   SQLite's POSIX locks).
//! - A holder is `<pid>-<40 random bits in 8 base-32 digits>`: a new process that reuses a dead
//!   one's pid has another file, so pid reuse cannot make a dead holder look alive.
//! - A live but stopped process (`SIGSTOP`) still holds its lock: liveness only ever shortens the
//!   wait for the dead, never for the slow.
//! - Where the lock file cannot be created (a read-only directory), claims carry no holder and
//!   jobs come back at lease expiry, as before; [`status`] says why.
//! - After `fork`, the child lets go of the lock descriptors it inherited at once, in a
//!   `pthread_atfork` child handler that points them at `/dev/null` (a `flock` belongs to the open
//!   file, so the child's copy would otherwise keep the parent's lock held after the parent died,
//!   and a child that never claims, say a pre-forked web worker, would hold the parent's jobs until
//!   their leases end). A child that claims takes a holder of its own. The same handlers hold this
//!   module's lock across the `fork`, so a child never inherits it locked by a thread it does not
//!   have.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// What a lock file's name has between the database's file name and the holder.
pub const MARKER: &str = "-honker-live-";

/// How long a holder found alive is believed alive before its lock is looked at again.
pub const ALIVE_FOR: Duration = Duration::from_millis(20);

struct Own {
    pid: u32,
    holder: Arc<str>,
    // Held open for the life of the process: the lock lives as long as this descriptor.
    file: File,
}

#[derive(Default)]
struct Registry {
    own: HashMap<PathBuf, Own>,
    refused: HashMap<PathBuf, String>,
    alive: HashMap<(PathBuf, String), Instant>,
    /// When [`due`] last said yes, per database, and the [`forget_alive`] count it had seen.
    looked: HashMap<PathBuf, (Instant, u64)>,
    /// How often [`forget_alive`] was called.
    forgotten: u64,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            #[cfg(unix)]
            fork::register();
            Mutex::default()
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// What `fork` does to the registry and the lock descriptors (see the module docs).
#[cfg(unix)]
mod fork {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
    use std::sync::MutexGuard;
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::{Registry, registry};

    /// A descriptor of `/dev/null`, opened once (close-on-exec), that the child's copies of the
    /// lock descriptors are pointed at; `-1` if it could not be opened (children then keep their
    /// copies, which only delays the return of a dead parent's jobs to their lease expiry).
    static NULL: AtomicI32 = AtomicI32::new(-1);

    thread_local! {
        /// The registry, locked by the forking thread from before `fork` until after it.
        static HELD: RefCell<Option<MutexGuard<'static, Registry>>> = const { RefCell::new(None) };
    }

    pub(super) fn register() {
        if let Ok(null) = File::open("/dev/null") {
            NULL.store(null.into_raw_fd(), Ordering::SeqCst);
        }
        // SAFETY: the three handlers are plain `extern "C"` functions of this library that stay
        // mapped (the extension is loaded permanently; a Rust binary never unloads itself), and
        // `pthread_atfork` only records them. Registration happens once, while the registry is
        // being created: no handler can run before it exists.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        debug_assert_eq!(rc, 0, "pthread_atfork");
    }

    extern "C" fn prepare() {
        let guard = registry();
        HELD.with(|h| *h.borrow_mut() = Some(guard));
    }

    extern "C" fn parent() {
        HELD.with(|h| h.borrow_mut().take());
    }

    extern "C" fn child() {
        HELD.with(|h| {
            let held = h.borrow_mut().take();
            let null = NULL.load(Ordering::SeqCst);
            if let (Some(reg), true) = (&held, null >= 0) {
                for own in reg.own.values() {
                    redirect(own.file.as_raw_fd(), null);
                }
            }
            drop(held);
        });
    }

    /// Point `fd` at `null`: the child's reference to the lock's open file is dropped, and the
    /// number stays taken so the `File` that owns it closes nothing else later.
    fn redirect(fd: RawFd, null: RawFd) {
        // SAFETY: `dup2` is async-signal-safe, so it may run in a child of a multithreaded
        // process; both descriptors are open (the `File` owns `fd` for the life of its registry
        // entry, and `null` is never closed).
        #[allow(unsafe_code)]
        unsafe {
            libc::dup2(null, fd);
        }
    }
}

/// The lock file of `holder` for the database at `db_path`.
pub fn lock_path(db_path: &Path, holder: &str) -> Option<PathBuf> {
    let name = db_path.file_name()?;
    let mut file = name.to_owned();
    file.push(MARKER);
    file.push(holder);
    Some(db_path.with_file_name(file))
}

/// Whether `file_name` is a liveness lock file of the database whose file name is `db_name`.
pub fn is_lock_file(db_name: &OsStr, file_name: &OsStr) -> bool {
    let (Some(db), Some(name)) = (db_name.to_str(), file_name.to_str()) else {
        return false;
    };
    name.strip_prefix(db)
        .and_then(|rest| rest.strip_prefix(MARKER))
        .is_some_and(|holder| !holder.is_empty())
}

fn new_holder() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // Written into every claimed job's row, so kept short: the pid (for people reading it) and
    // 40 random bits in base 32 (lower case, so also unique on case-insensitive file systems).
    // A reused pid repeats a holder only if those 40 bits repeat too.
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let bits = h.finish();
    let tail: String = (0..8)
        .map(|i| char::from(DIGITS[((bits >> (5 * i)) & 31) as usize]))
        .collect();
    format!("{}-{tail}", std::process::id())
}

/// This process's holder for the database at `db_path`, taking its lock the first time; `None`
/// where the lock file cannot be created (see [`status`]).
pub fn holder(db_path: &Path) -> Option<Arc<str>> {
    let pid = std::process::id();
    let mut reg = registry();
    if let Some(own) = reg.own.get(db_path) {
        if own.pid == pid {
            return Some(own.holder.clone());
        }
        // Inherited across a fork (its descriptor already points at /dev/null, see the module
        // docs): take a lock of our own.
        reg.own.remove(db_path);
    }
    if reg.refused.contains_key(db_path) {
        return None;
    }
    let holder = new_holder();
    let taken = lock_path(db_path, &holder)
        .ok_or_else(|| "the database path has no file name".to_owned())
        .and_then(|path| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.try_lock()
                .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
            Ok(file)
        });
    match taken {
        Ok(file) => {
            let holder: Arc<str> = holder.into();
            reg.own.insert(
                db_path.to_owned(),
                Own {
                    pid,
                    holder: holder.clone(),
                    file,
                },
            );
            Some(holder)
        }
        Err(reason) => {
            reg.refused.insert(db_path.to_owned(), reason);
            None
        }
    }
}

/// Whether claims on `db_path` would carry a holder, without creating anything: `Ok` when this
/// process already holds its lock or the directory looks writable.
///
/// # Errors
///
/// Why not (the lock file was refused, or the directory is read-only).
pub fn can_lock(db_path: &Path) -> Result<(), String> {
    {
        let reg = registry();
        if reg.own.contains_key(db_path) {
            return Ok(());
        }
        if let Some(why) = reg.refused.get(db_path) {
            return Err(why.clone());
        }
    }
    let dir = match db_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.permissions().readonly() => Err(format!(
            "the directory {} is read-only: no liveness lock file can be created beside the database",
            dir.display()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot look at {}: {e}", dir.display())),
    }
}

/// Whether the claims of this process on `db_path` carry a holder, or why not.
///
/// # Errors
///
/// Why the lock file could not be created (jobs of a dead worker then come back at lease
/// expiry).
pub fn status(db_path: &Path) -> Result<(), String> {
    if holder(db_path).is_some() {
        return Ok(());
    }
    Err(registry()
        .refused
        .get(db_path)
        .cloned()
        .unwrap_or_else(|| "no lock file".into()))
}

/// Forget which holders were seen alive, so the next [`is_dead`] looks at their locks again and
/// the next [`due`] says yes (the kernel wake backend calls it when a liveness lock file closes).
pub fn forget_alive() {
    let mut reg = registry();
    reg.alive.clear();
    reg.forgotten += 1;
}

/// Whether a claimer of this process should look for dead holders on `db_path` now: at most once
/// per [`ALIVE_FOR`] per database, and at once after [`forget_alive`] (a lock file closed). A busy
/// claimer then pays for the look (a pass over the running jobs) every 20 ms rather than on each
/// claim; a death the kernel backend reports is still seen on the next claim.
pub fn due(db_path: &Path) -> bool {
    let mut reg = registry();
    let forgotten = reg.forgotten;
    match reg.looked.get_mut(db_path) {
        Some((at, seen)) if *seen == forgotten && at.elapsed() < ALIVE_FOR => false,
        Some(entry) => {
            *entry = (Instant::now(), forgotten);
            true
        }
        None => {
            reg.looked
                .insert(db_path.to_owned(), (Instant::now(), forgotten));
            true
        }
    }
}

/// Whether `holder`'s process (of the database at `db_path`) is dead: its lock file exists and
/// its lock is free. Then the file is removed. `false` when it is alive, is this process, or
/// cannot be told (no such file: another host, an older build, or already cleaned up).
pub fn is_dead(db_path: &Path, holder: &str) -> bool {
    let key = (db_path.to_owned(), holder.to_owned());
    {
        let reg = registry();
        if reg
            .own
            .get(db_path)
            .is_some_and(|o| &*o.holder == holder && o.pid == std::process::id())
        {
            return false;
        }
        if reg.alive.get(&key).is_some_and(|t| t.elapsed() < ALIVE_FOR) {
            return false;
        }
    }
    let Some(path) = lock_path(db_path, holder) else {
        return false;
    };
    // Read-only: closing a descriptor opened for reading raises no close-after-write event,
    // so a look never wakes the kernel backends of other processes.
    let Ok(file) = File::open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            // Dead: nobody else can take this name again (the random part), so removing the file
            // while we hold its lock is safe. A failure only leaves a file behind.
            let _ = std::fs::remove_file(&path);
            registry().alive.remove(&key);
            true
        }
        Err(_) => {
            let mut reg = registry();
            if reg.alive.len() > 4096 {
                reg.alive.retain(|_, t| t.elapsed() < ALIVE_FOR);
            }
            reg.alive.insert(key, Instant::now());
            false
        }
    }
}

/// Whether `holder`'s process (of the database at `db_path`) is gone: dead ([`is_dead`], which
/// removes its lock file) or without a lock file at all. A live process keeps its lock file from
/// its first claim on, so a holder without one will never claim again; one of another host or an
/// older build cannot be told from a gone one (nothing on this host holds it either).
pub fn is_gone(db_path: &Path, holder: &str) -> bool {
    is_dead(db_path, holder) || lock_path(db_path, holder).is_some_and(|p| !p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_names_round_trip() {
        let p = lock_path(Path::new("/x/app.db"), "12-ab").unwrap();
        assert_eq!(p, Path::new("/x/app.db-honker-live-12-ab"));
        assert!(is_lock_file(OsStr::new("app.db"), p.file_name().unwrap()));
        assert!(!is_lock_file(
            OsStr::new("app.db"),
            OsStr::new("app.db-wal")
        ));
        assert!(!is_lock_file(
            OsStr::new("app.db"),
            OsStr::new("app.db-honker-live-")
        ));
        assert!(!is_lock_file(
            OsStr::new("other.db"),
            p.file_name().unwrap()
        ));
    }

    #[test]
    fn a_holder_is_alive_while_its_process_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let me = holder(&db).unwrap();
        assert_eq!(holder(&db).unwrap(), me, "one holder per process and file");
        assert!(!is_dead(&db, &me), "this process is alive");
        assert!(lock_path(&db, &me).unwrap().exists());
        // A holder whose file is there but unlocked is dead, and its file goes.
        let ghost = "1-00000000deadbeef";
        let ghost_file = lock_path(&db, ghost).unwrap();
        File::create(&ghost_file).unwrap();
        assert!(is_dead(&db, ghost));
        assert!(!ghost_file.exists());
        // No file: cannot tell, so not dead.
        assert!(!is_dead(&db, "2-0000000000000000"));
        assert!(status(&db).is_ok());
    }

    #[test]
    fn a_read_only_directory_means_no_holder_and_says_why() {
        let db = Path::new("/proc/honker-no-such-dir/app.db");
        assert!(holder(db).is_none());
        let why = status(db).unwrap_err();
        assert!(why.contains("cannot create"), "{why}");
    }

    /// Run `child` in a forked child of this (multithreaded) test process: its exit code, or
    /// `None` if it had not exited `within` after the fork (it is then killed).
    #[cfg(unix)]
    #[allow(unsafe_code)]
    fn in_forked_child(child: impl FnOnce() -> i32, within: Duration) -> Option<i32> {
        // SAFETY: the child runs only `child` (which takes this module's lock, allocates and
        // opens a file: glibc's allocator is fork-safe, and this module's lock is what is under
        // test) and leaves with `_exit`, never returning into the test harness; the parent only
        // waits for, and if need be kills, the pid `fork` gave it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
                libc::_exit(code.unwrap_or(101));
            }
            let deadline = Instant::now() + within;
            let mut status = 0;
            loop {
                if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                    return Some(if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        -1
                    });
                }
                if Instant::now() > deadline {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fork_while_another_thread_uses_the_registry_never_hangs_the_child() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("storm.db");
        let other = dir.path().join("child.db");
        holder(&db).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy = {
            let (stop, db) = (stop.clone(), db.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    holder(&db);
                    is_dead(&db, "1-0000000000000000");
                    forget_alive();
                }
            })
        };
        let mut hung = Vec::new();
        for i in 0..300 {
            // The child takes a holder of its own (on another file, so each child's differs).
            let code = in_forked_child(
                || i32::from(holder(&other).is_none()),
                Duration::from_secs(5),
            );
            match code {
                Some(0) => {}
                Some(c) => panic!("fork {i}: the child failed with {c}"),
                None => hung.push(i),
            }
        }
        stop.store(true, Ordering::SeqCst);
        busy.join().unwrap();
        assert!(
            hung.is_empty(),
            "children hung on a registry lock held by a thread they do not have: forks {hung:?}"
        );
    }
}
