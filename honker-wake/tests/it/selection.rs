//! Choosing a backend: by name, from `HONKER_WAKE_BACKEND`, from SQL with
//! `honker_wake_backend(name)`, and the `wake.not_compiled` error of a backend whose feature is
//! off. Tests that change the process's default backend run in a child process of their own.

use std::process::Command;

use honker_core::WakeError;
use honker_wake::{BACKEND_ENV, Backend, Hub};

use crate::{Db, ROLE, commit, deadline};

#[test]
fn names_round_trip_and_unknown_names_are_refused() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        assert_eq!(b.to_string().to_uppercase().parse::<Backend>().unwrap(), b);
    }
    let e = "fsevents".parse::<Backend>().unwrap_err();
    assert_eq!(e.code(), "arg.invalid");
    assert!(e.to_string().contains("fsevents"), "{e}");
    assert_eq!(Backend::compiled()[0], Backend::DataVersion);
    assert_eq!(Backend::DataVersion.feature(), None);
}

#[test]
fn a_backend_whose_feature_is_off_says_so_everywhere() {
    let db = Db::new("wal");
    for b in Backend::ALL {
        if b.is_compiled() {
            assert!(b.ensure_compiled().is_ok());
            let wake = b.start(&db.path).unwrap();
            let seen = wake.epoch();
            commit(&db.connect());
            assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
            continue;
        }
        let expect = WakeError::NotCompiled {
            backend: b.name(),
            feature: b.feature().unwrap(),
        };
        assert_eq!(b.start(&db.path).unwrap_err(), expect);
        assert_eq!(
            Hub::global().wake_for_with(&db.path, b).unwrap_err(),
            expect
        );
        assert_eq!(expect.code(), "wake.not_compiled");
    }
}

/// The backend a child is asked to use, and what it must report.
fn run_selection_child(env: Option<&str>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "selection");
    match env {
        Some(v) => cmd.env(BACKEND_ENV, v),
        None => cmd.env_remove(BACKEND_ENV),
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "selection child ({env:?}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_environment_and_sql_choose_the_default_backend() {
    run_selection_child(None);
    for b in Backend::ALL {
        run_selection_child(Some(b.name()));
    }
    run_selection_child(Some("fsevents"));
}

pub(crate) fn child_main() {
    let db = Db::new("wal");
    let env = std::env::var(BACKEND_ENV).ok();
    let hub = Hub::global();
    let conn = db.connect();
    honker_wake::sql::register(&conn).unwrap();
    let sql_backend = |arg: Option<&str>| -> Result<String, String> {
        let r = match arg {
            None => conn.query_row("SELECT honker_wake_backend()", [], |r| r.get(0)),
            Some(a) => conn.query_row("SELECT honker_wake_backend(?1)", [a], |r| r.get(0)),
        };
        r.map_err(|e| e.to_string())
    };
    let wanted = match env.as_deref().map(str::parse::<Backend>) {
        None => Backend::platform_default(),
        Some(Ok(b)) => b,
        Some(Err(_)) => {
            // A bad name is an error for every wait, never a silent fallback.
            let e = hub.wake_for(&db.path).unwrap_err();
            assert_eq!(e.code(), "wake.start");
            let e = sql_backend(None).unwrap_err();
            assert!(e.starts_with("honker: wake.start: "), "{e}");
            // Choosing a backend explicitly repairs it.
            assert_eq!(sql_backend(Some("data_version")).unwrap(), "data_version");
            assert!(hub.wake_for(&db.path).is_ok());
            return;
        }
    };
    if !wanted.is_compiled() {
        assert_eq!(
            hub.wake_for(&db.path).unwrap_err().code(),
            "wake.not_compiled"
        );
        // The name is reported as chosen; using it says what is missing.
        assert_eq!(sql_backend(None).unwrap(), wanted.name());
        let e = conn
            .query_row("SELECT honker_epoch()", [], |r| r.get::<_, i64>(0))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("honker: wake.not_compiled: "), "{e}");
        return;
    }
    assert_eq!(hub.default_backend().unwrap(), wanted);
    assert_eq!(sql_backend(None).unwrap(), wanted.name());
    let e = sql_backend(Some("bogus")).unwrap_err();
    assert!(e.starts_with("honker: arg.invalid: "), "{e}");
    // Before the first honker_epoch(), SQL may switch to any compiled backend.
    for b in Backend::compiled() {
        assert_eq!(sql_backend(Some(b.name())).unwrap(), b.name());
    }
    assert_eq!(sql_backend(Some(wanted.name())).unwrap(), wanted.name());
    let epoch: i64 = conn
        .query_row("SELECT honker_epoch()", [], |r| r.get(0))
        .unwrap();
    let writer = db.connect();
    commit(&writer);
    let now: i64 = conn
        .query_row("SELECT honker_wait(?1, 20000)", [epoch], |r| r.get(0))
        .unwrap();
    assert!(
        now > epoch,
        "honker_wait on the {wanted} backend missed a commit"
    );
    // Once honker_epoch() pinned a watcher, switching would make epochs incomparable.
    for b in Backend::compiled().into_iter().filter(|b| *b != wanted) {
        let e = sql_backend(Some(b.name())).unwrap_err();
        assert!(e.starts_with("honker: wake.start: "), "{e}");
    }
    assert_eq!(sql_backend(Some(wanted.name())).unwrap(), wanted.name());
}

/// Issue 16: where the platform's default (the kernel backend on Linux) cannot start, the Hub
/// falls back to `data_version` by itself, once, says why, and waits still wake; a backend the
/// user chose is never replaced behind their back.
#[test]
fn the_default_falls_back_to_data_version_when_the_kernel_backend_cannot_start() {
    for forced in [None, Some("kernel")] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, "fallback")
            .env("HONKER_WAKE_KERNEL_FAIL_FOR_TESTS", "1");
        match forced {
            Some(v) => cmd.env(BACKEND_ENV, v),
            None => cmd.env_remove(BACKEND_ENV),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "fallback child ({forced:?}) failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub(crate) fn fallback_main() {
    let db = Db::new("wal");
    let hub = Hub::global();
    if std::env::var(BACKEND_ENV).is_ok() {
        // Chosen by the user: the failure is theirs to see.
        let e = hub.wake_for(&db.path).unwrap_err();
        if Backend::Kernel.is_compiled() {
            assert_eq!(e.code(), "wake.start");
            assert!(
                e.to_string().contains("HONKER_WAKE_KERNEL_FAIL_FOR_TESTS"),
                "{e}"
            );
        } else {
            assert_eq!(e.code(), "wake.not_compiled");
        }
        return;
    }
    if Backend::platform_default() == Backend::DataVersion {
        return; // nothing to fall back from on this platform or build
    }
    let wake = hub.wake_for(&db.path).unwrap();
    let (backend, why) = hub.backend_choice().unwrap();
    assert_eq!(backend, Backend::DataVersion);
    assert!(
        why.starts_with("fell back from kernel to data_version: "),
        "{why}"
    );
    // Once: later handles, pinned ones too, use data_version without trying again.
    let other = Db::new("wal");
    hub.pinned(&other.path).unwrap();
    assert_eq!(hub.default_backend().unwrap(), Backend::DataVersion);
    // And the fallback wakes on another connection's commit.
    let writer = db.connect();
    let seen = wake.epoch();
    commit(&writer);
    assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
    let conn = db.connect();
    honker_wake::sql::register(&conn).unwrap();
    let info: String = conn
        .query_row("SELECT honker_info()", [], |r| r.get(0))
        .unwrap();
    assert!(info.contains("fell back from kernel"), "{info}");
}
