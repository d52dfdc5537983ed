/* stmts.c: how the extension's statements live and die inside a real host (the system
 * libsqlite3), measured with SQLite's own counters rather than timings.
 *
 * Usage: stmts <extension> <db> calls <rounds>
 *        stmts <extension> <db> churn <connections>
 *
 * calls: one connection loads the extension, then runs every honker SQL function once per round.
 *        An authorizer counts compile-time callbacks: SQLite calls it only while it prepares
 *        (or re-prepares) a statement, so its count is a prepare counter. In the second half of
 *        the rounds, this connection and a second one create, drop and vacuum tables between
 *        rounds (schema changes every cached statement must survive). It prints one line per
 *        checkpoint (round 10, the last round before the schema changes, and the last round):
 *          "round <n> authorizer <count> live <statements>"
 *        then closes with the old sqlite3_close() and prints "close <rc>" (0 = SQLITE_OK).
 * churn: opens, loads, sets up, uses (one enqueue, one claim+ack, one notify, one publish) and closes
 *        <connections> connections in turn, with the old sqlite3_close(), printing
 *        "conn <n> rss_kb <kb>" every 1000 and "close-failures <n>" at the end.
 * refused: loads the extension into a file it must refuse (say schema.too_new) as the first
 *        load of the process, closes that connection, loads again, and prints
 *        "load <rc> <message>", "close <rc>", "again <rc>" and "survived": SQLite dlcloses an
 *        extension whose init failed, and a close running destructors of an unmapped library
 *        crashes the host.
 * Every failure prints "error: ..." and exits with status 3.
 */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ext_path;
static long authorized;

static void die(const char *what, sqlite3 *db) {
    printf("error: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    fflush(stdout);
    exit(3);
}

/* PRAGMA statements are left out: SQLite itself re-prepares a PRAGMA on every run (its program
 * ends in OP_Expire), whoever caches it. */
static int count_authorizer(void *arg, int action, const char *a, const char *b, const char *c,
                            const char *d) {
    (void)arg; (void)a; (void)b; (void)c; (void)d;
    if (action != SQLITE_PRAGMA) authorized++;
    return SQLITE_OK;
}

static sqlite3 *open_loaded(const char *path) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("open", db);
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, ext_path, NULL, &err) != SQLITE_OK) {
        printf("error: load: %s\n", err ? err : "?");
        exit(3);
    }
    return db;
}

/* Step a statement to completion and reset it; a honker error message is fine (it is counted
 * like any call), anything else fails the run. */
static void step_all(sqlite3 *db, sqlite3_stmt *st) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
    if (rc != SQLITE_DONE && strncmp(sqlite3_errmsg(db), "honker: ", 8) != 0)
        die(sqlite3_sql(st), db);
    sqlite3_reset(st);
}

/* Prepare, run and finalize one statement. */
static void run(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die(sql, db);
    step_all(db, st);
    sqlite3_finalize(st);
}

/* Every SQL function of the extension, with arguments that make it do its real work. */
static const char *const CALLS[] = {
    "SELECT honker_version()",
    "SELECT honker_migrate()",
    "SELECT honker_setup()",
    "SELECT honker_info()",
    "SELECT honker_epoch()",
    "SELECT honker_wait(honker_epoch(), 0)",
    "SELECT honker_wait(0, 0, 'stmts-key')",
    "SELECT honker_wait_cancel('stmts-nobody')",
    "SELECT honker_wake_backend()",
    "SELECT honker_notify('c', '{\"a\":1}')",
    "SELECT notify('c', '{\"a\":2}')",
    "SELECT honker_listen('c', 0, 10)",
    "SELECT honker_listen_wait('c', 0, 1, 0)",
    "SELECT honker_listen_wait('c', 0, 1, 0, 'stmts-key')",
    "SELECT honker_notify_prune('{\"max_rows\":1000}')",
    "SELECT honker_notify_prune()",
    "SELECT honker_upkeep_stats()",
    "SELECT honker_queue_configure('q', '{\"max_attempts\":5}')",
    "SELECT honker_enqueue('q', '{\"n\":1}')",
    "SELECT honker_enqueue('q', '{\"n\":2}', '{\"priority\":1,\"dedup_key\":\"d\"}')",
    "SELECT honker_enqueue_batch('q', '[1,2,3]')",
    "SELECT honker_enqueue_batch('q', '[4]', '{\"delay_ms\":0}')",
    "SELECT honker_ack(j.value->>'id', j.value->>'lease_token')"
    " FROM json_each(honker_claim('q', 'w', 2, 60000)) j",
    "SELECT honker_ack_batch((SELECT json_group_array(json_array(j.value->>'id',"
    " j.value->>'lease_token')) FROM json_each(honker_claim('q', 'w', 2)) j))",
    "SELECT honker_retry(j.value->>'id', j.value->>'lease_token', 0, 'again')"
    " FROM json_each(honker_claim_wait('q', 'w', 1, 60000, 0)) j",
    "SELECT honker_release(j.value->>'id', j.value->>'lease_token')"
    " FROM json_each(honker_claim_wait('q', 'w', 1, NULL, 0, 'stmts-key')) j",
    "SELECT honker_heartbeat(j.value->>'id', j.value->>'lease_token', 1000),"
    " honker_fail(j.value->>'id', j.value->>'lease_token', 'no')"
    " FROM json_each(honker_claim('q', 'w', 1)) j",
    "SELECT honker_retry(j.value->>'id', j.value->>'lease_token')"
    " FROM json_each(honker_claim('q', 'w', 1)) j",
    "SELECT honker_cancel(honker_enqueue('q2', '{}'))",
    "SELECT honker_job(1)",
    "SELECT honker_queue_stats('q')",
    "SELECT honker_next_due('q')",
    "SELECT honker_dead_list('q')",
    "SELECT honker_dead_list('q', 5)",
    "SELECT honker_dead_requeue(1)",
    "SELECT honker_dead_requeue_all('q')",
    "SELECT honker_dead_purge('q')",
    "SELECT honker_dead_purge('q', '{\"older_than_ms\":0}')",
    "SELECT honker_result_save(honker_enqueue('q3', '{}'), '{\"r\":1}')",
    "SELECT honker_result_save(1, '{\"r\":1}', 60000)",
    "SELECT honker_result_get(1)",
    "SELECT honker_lock_release('L', honker_lock_acquire('L', 'me', 60000))",
    "SELECT honker_lock_renew('L', 1, 1000)",
    "SELECT honker_rate_limit('r', 1000000000, 1000)",
    "SELECT honker_publish('t', '{\"e\":1}')",
    "SELECT honker_publish('t', '{\"e\":2}', 'k')",
    "SELECT honker_read('t', 0, 10)",
    "SELECT honker_read_wait('t', 0, 1, 0)",
    "SELECT honker_read_wait('t', 0, 1, 0, 'stmts-key')",
    "SELECT honker_commit_offset('c', 't', 1)",
    "SELECT honker_offset('c', 't')",
    "SELECT honker_consumers('t')",
    "SELECT honker_consumer_remove('x', 't')",
    "SELECT honker_stream_configure('t', '{\"max_events\":1000}')",
    "SELECT honker_stream_trim('t', '{\"max_events\":100}')",
    "SELECT honker_stream_trim('t')",
    "SELECT honker_streams()",
    "SELECT honker_schedule('s', '* * * * *', 'cq', '{}')",
    "SELECT honker_schedule('s2', '0 3 * * *', 'cq', '{}', '{\"tz\":\"Europe/Berlin\"}')",
    "SELECT honker_schedules()",
    "SELECT honker_schedules(2)",
    "SELECT honker_schedule_pause('s2')",
    "SELECT honker_schedule_resume('s2')",
    "SELECT honker_cron_next('* * * * *', 0)",
    "SELECT honker_cron_next('0 3 * * *', 0, 'Europe/Berlin')",
    "SELECT honker_cron_next('0 3 * * *', 0, 'UTC', 3)",
    "SELECT honker_cron_tick(0)",
    "SELECT honker_cron_tick()",
    "SELECT honker_unschedule('s3')",
};

static int live_statements(sqlite3 *db) {
    int n = 0;
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s)) n++;
    return n;
}

static int run_calls(const char *path, int rounds) {
    sqlite3 *db = open_loaded(path);
    sqlite3 *other = open_loaded(path);
    sqlite3_busy_timeout(other, 5000);
    run(db, "SELECT honker_setup()");
    /* The host prepares its calls once, so every prepare the authorizer counts from here on is
     * the extension's own. */
    size_t n_calls = sizeof CALLS / sizeof CALLS[0];
    sqlite3_stmt *calls[sizeof CALLS / sizeof CALLS[0]];
    for (size_t i = 0; i < n_calls; i++)
        if (sqlite3_prepare_v2(db, CALLS[i], -1, &calls[i], NULL) != SQLITE_OK) die(CALLS[i], db);
    sqlite3_set_authorizer(db, count_authorizer, NULL);
    for (int round = 1; round <= rounds; round++) {
        for (size_t i = 0; i < n_calls; i++) step_all(db, calls[i]);
        /* Schema changes, from this connection and from another one. */
        if (round > rounds / 2 && round % 50 == 0) {
            run(other, "CREATE TABLE IF NOT EXISTS user_t(x)");
            run(db, "CREATE TABLE IF NOT EXISTS own_t(x)");
            run(other, "DROP TABLE IF EXISTS user_t");
            run(db, "DROP TABLE IF EXISTS own_t");
        }
        if (round > rounds / 2 && round % 250 == 0) run(other, "VACUUM");
        if (round == 10 || round == rounds / 2 || round == rounds) {
            printf("round %d authorizer %ld live %d\n", round, authorized, live_statements(db));
            fflush(stdout);
        }
    }
    sqlite3_set_authorizer(db, NULL, NULL);
    for (size_t i = 0; i < n_calls; i++) sqlite3_finalize(calls[i]);
    if (sqlite3_close(other) != SQLITE_OK) die("close other", other);
    int rc = sqlite3_close(db);
    printf("close %d\n", rc);
    fflush(stdout);
    return rc == SQLITE_OK ? 0 : 3;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2) die("statm", NULL);
    fclose(f);
    return resident * 4;
}

static int run_churn(const char *path, int connections) {
    int failures = 0;
    /* A connection kept open, as an application's pool would: closing the last connection of a
     * WAL file checkpoints and deletes the WAL, which is not what this measures. */
    sqlite3 *keeper = open_loaded(path);
    run(keeper, "SELECT honker_setup()");
    for (int i = 1; i <= connections; i++) {
        sqlite3 *db = open_loaded(path);
        run(db, "SELECT honker_setup()");
        run(db, "SELECT honker_enqueue('churn', '{\"i\":1}')");
        run(db, "SELECT honker_ack(j.value->>'id', j.value->>'lease_token')"
                " FROM json_each(honker_claim('churn', 'w', 1)) j");
        run(db, "SELECT honker_notify('churn', '{}')");
        run(db, "SELECT honker_publish('churn', '{}')");
        if (sqlite3_close(db) != SQLITE_OK) {
            failures++;
            sqlite3_close_v2(db);
        }
        if (i % 1000 == 0) {
            printf("conn %d rss_kb %ld\n", i, rss_kb());
            fflush(stdout);
        }
    }
    if (sqlite3_close(keeper) != SQLITE_OK) failures++;
    printf("close-failures %d\n", failures);
    fflush(stdout);
    return 0;
}

static int run_refused(const char *path) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) die("open", db);
    sqlite3_enable_load_extension(db, 1);
    int rc = sqlite3_load_extension(db, ext_path, NULL, &err);
    printf("load %d %s\n", rc, err ? err : "");
    sqlite3_free(err);
    printf("close %d\n", sqlite3_close(db));
    fflush(stdout);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) die("reopen", db);
    sqlite3_enable_load_extension(db, 1);
    err = NULL;
    printf("again %d\n", sqlite3_load_extension(db, ext_path, NULL, &err));
    sqlite3_free(err);
    sqlite3_close(db);
    printf("survived\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: stmts <extension> <db> calls|churn <n>\n");
        return 2;
    }
    ext_path = argv[1];
    int n = atoi(argv[4]);
    if (strcmp(argv[3], "calls") == 0) return run_calls(argv[2], n);
    if (strcmp(argv[3], "churn") == 0) return run_churn(argv[2], n);
    if (strcmp(argv[3], "refused") == 0) return run_refused(argv[2]);
    fprintf(stderr, "unknown mode %s\n", argv[3]);
    return 2;
}
