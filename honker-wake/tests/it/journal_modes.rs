//! Rollback-journal modes wake too: DELETE, TRUNCATE and PERSIST, switched by writers while the
//! watcher runs, with commits from another connection and from another process.

use crate::{Committer, Db, commit, counter, deadline};

#[test]
fn commits_wake_in_every_journal_mode_while_writers_switch_modes() {
    crate::for_each_backend(commits_wake_in_every_journal_mode_while_writers_switch_modes_with);
}

fn commits_wake_in_every_journal_mode_while_writers_switch_modes_with(
    backend: honker_wake::Backend,
) {
    let db = Db::new("delete");
    let wake = crate::start(backend, &db.path);
    let other = db.connect();
    let mut child = Committer::spawn();
    let mut expected = 0;
    // Rollback modes are per connection, so each writer switches its own; WAL (last) is a
    // property of the file and can be entered while the watcher is open.
    for mode in ["delete", "truncate", "persist", "wal"] {
        let mode_now: String = other
            .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode_now, mode);
        child.journal_mode(&db.path, mode);

        let seen = wake.epoch();
        commit(&other);
        expected += 1;
        let now = wake.wait_past(seen, Some(deadline())).unwrap();
        assert!(
            now > seen,
            "{mode}: a commit from another connection did not wake"
        );

        let seen = wake.epoch();
        child.commit(&db.path);
        expected += 1;
        let now = wake.wait_past(seen, Some(deadline())).unwrap();
        assert!(
            now > seen,
            "{mode}: a commit from another process did not wake"
        );
        assert_eq!(counter(&other), expected);
    }
    assert!(!wake.has_failed());
    assert_eq!(wake.stats().reconnects, 0);
}
