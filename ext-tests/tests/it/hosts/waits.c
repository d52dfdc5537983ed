/* waits.c: cancelling blocked waits from another connection of the same process, in a real host
 * (the system libsqlite3).
 *
 * Usage: waits <extension> <db> cancel <waiters>
 *
 * Starts <waiters> threads, each with its own connection, blocked for up to 20 s in one of
 * listen_wait, claim_wait and read_wait (in turn) with cancel key "key-<i>". Then, from the main
 * thread's own connection:
 *   1. cancels key-1 only and prints "cancelled 1 stopped <n> ms <elapsed> msg <message>";
 *   2. after 300 ms prints "still-waiting <count>" (the others must still be blocked);
 *   3. cancels every other key and prints "all-cancelled <count> max_ms <ms>", counting the
 *      waits that ended with wait.cancelled;
 *   4. cancels one thread blocked in honker_wait and prints "wait-cancelled ms <ms> msg <message>";
 *   5. cancels "key-early" before any wait uses it, then waits with it and prints
 *      "early <message>".
 * Every failure prints "error: ..." and exits with status 3.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *ext_path;
static const char *db_path;

static void die(const char *what, sqlite3 *db) {
    printf("error: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    fflush(stdout);
    exit(3);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static sqlite3 *open_loaded(void) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("open", db);
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, ext_path, NULL, &err) != SQLITE_OK) {
        printf("error: load: %s\n", err ? err : "?");
        exit(3);
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT honker_setup()", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        die("setup", db);
    sqlite3_finalize(st);
    return db;
}

struct waiter {
    int index;
    sqlite3 *db;
    char sql[256];
    volatile int done;
    double ended_ms;
    char message[512];
};

static void *wait_thread(void *arg) {
    struct waiter *w = arg;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(w->db, w->sql, -1, &st, NULL) != SQLITE_OK) die(w->sql, w->db);
    int rc = sqlite3_step(st);
    w->ended_ms = now_ms();
    snprintf(w->message, sizeof w->message, "%s",
             rc == SQLITE_ROW ? "returned" : sqlite3_errmsg(w->db));
    sqlite3_finalize(st);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static long cancel(sqlite3 *db, const char *key) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT honker_wait_cancel('%s')", key);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
        die(sql, db);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The crowd waits in the three functions that loop until they find rows (so a kick of the shared
 * watcher by another key's cancel does not end them); index 3 is honker_wait, which returns at any
 * epoch change by design and is cancelled alone. */
static void set_sql(struct waiter *w, const char *key) {
    switch (w->index) {
    case 0:
        snprintf(w->sql, sizeof w->sql, "SELECT honker_listen_wait('never', 0, 1, 20000, '%s')", key);
        break;
    case 1:
        snprintf(w->sql, sizeof w->sql,
                 "SELECT honker_claim_wait('never-q', 'w', 1, NULL, 20000, '%s')", key);
        break;
    case 2:
        snprintf(w->sql, sizeof w->sql, "SELECT honker_read_wait('never-t', 0, 1, 20000, '%s')", key);
        break;
    default:
        snprintf(w->sql, sizeof w->sql, "SELECT honker_wait(honker_epoch(), 20000, '%s')", key);
    }
}

static int run_cancel(int n) {
    sqlite3 *ctl = open_loaded();
    struct waiter *ws = calloc((size_t)n, sizeof *ws);
    pthread_t *ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", i);
        ws[i].index = i % 3;
        ws[i].db = open_loaded();
        set_sql(&ws[i], key);
        if (pthread_create(&ts[i], NULL, wait_thread, &ws[i]) != 0) die("pthread_create", NULL);
    }
    /* A cancel that lands before its wait starts is kept for it, so this pause only makes the
     * "stopped" count below meaningful, not the outcome. */
    usleep(300 * 1000);

    double t0 = now_ms();
    long stopped = cancel(ctl, "key-1");
    pthread_join(ts[1], NULL);
    printf("cancelled 1 stopped %ld ms %.1f msg %s\n", stopped, ws[1].ended_ms - t0, ws[1].message);
    fflush(stdout);

    usleep(300 * 1000);
    int still = 0;
    for (int i = 0; i < n; i++)
        if (i != 1 && !__atomic_load_n(&ws[i].done, __ATOMIC_SEQ_CST)) still++;
    printf("still-waiting %d\n", still);
    fflush(stdout);

    int cancelled = 0;
    double max_ms = 0;
    for (int i = 0; i < n; i++) {
        if (i == 1) continue;
        char key[32];
        snprintf(key, sizeof key, "key-%d", i);
        double t = now_ms();
        cancel(ctl, key);
        pthread_join(ts[i], NULL);
        if (ws[i].ended_ms - t > max_ms) max_ms = ws[i].ended_ms - t;
        if (strstr(ws[i].message, "honker: wait.cancelled: ") == ws[i].message) cancelled++;
    }
    printf("all-cancelled %d max_ms %.1f\n", cancelled, max_ms);
    fflush(stdout);

    struct waiter alone = {.index = 3, .db = open_loaded()};
    set_sql(&alone, "key-alone");
    pthread_t t_alone;
    if (pthread_create(&t_alone, NULL, wait_thread, &alone) != 0) die("pthread_create", NULL);
    usleep(300 * 1000);
    double t_a = now_ms();
    cancel(ctl, "key-alone");
    pthread_join(t_alone, NULL);
    printf("wait-cancelled ms %.1f msg %s\n", alone.ended_ms - t_a, alone.message);
    fflush(stdout);

    cancel(ctl, "key-early");
    struct waiter early = {.index = 0, .db = open_loaded()};
    set_sql(&early, "key-early");
    wait_thread(&early);
    printf("early %s\n", early.message);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 || strcmp(argv[3], "cancel") != 0) {
        fprintf(stderr, "usage: waits <extension> <db> cancel <waiters>\n");
        return 2;
    }
    ext_path = argv[1];
    db_path = argv[2];
    return run_cancel(atoi(argv[4]));
}
