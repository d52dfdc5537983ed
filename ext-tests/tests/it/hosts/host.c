/* host.c: a small real SQLite host (the system libsqlite3) for host-process safety tests of
 * libhonker_ext.so: closing the connection that loaded the extension while another one waits,
 * and forking after the extension started its watcher.
 *
 * Usage: host <extension> <db> close|fork|forkhold <channel>
 *
 * Both modes print "ready <after_id> <tid>" (flushed) just before a thread calls
 * honker_listen_wait(channel, after_id, 10, 20000), then "got <json>" with its result.
 * Every failure prints "error: ..." and exits with status 3.
 *
 * close: connection A loads the extension and starts the file's watcher (honker_epoch());
 *        connection B loads it too and waits in a thread; when a line arrives on stdin (the test
 *        sends it once B is asleep), A is closed and "closed A" printed. After B
 *        returns and is closed, it prints "dlclose <n>": how often SQLite dlclosed the extension
 *        once every connection that loaded it has closed (0: it loads permanently, so SQLite
 *        never unmaps it under the watcher thread).
 * fork:  the parent loads the extension, runs honker_wait once (the watcher runs), then forks.
 *        The child opens its own connection, loads the extension and waits; the parent exits
 *        with the child's exit status ("child signal N" and status 4 if it was killed).
 * forkhold: <channel> is a queue. The parent claims every ready job of it with a 10-minute
 *        lease, then forks a child that never touches SQLite or honker again (a pre-forked
 *        worker that does not claim) and only sleeps; the parent prints "held <n> child <pid>"
 *        and blocks on stdin until it is killed (or stdin ends).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ext_path;
static const char *channel;

/* The extension's dlopen handle, and how often SQLite dlclosed it. */
static void *ext_handle;
static int ext_dlcloses;

/* Interposes libc's dlclose (the host is linked with -rdynamic, so libsqlite3's call resolves
 * here) to count SQLite's dlcloses of the extension. Whether the library stays mapped afterwards
 * proves nothing (glibc keeps a library with live thread-local destructors mapped); SQLite never
 * calling dlclose is what SQLITE_OK_LOAD_PERMANENTLY promises. */
int dlclose(void *handle) {
    static int (*real_dlclose)(void *);
    if (!real_dlclose) real_dlclose = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    if (ext_handle && handle == ext_handle) __atomic_add_fetch(&ext_dlcloses, 1, __ATOMIC_SEQ_CST);
    return real_dlclose(handle);
}

static void die(const char *what, sqlite3 *db) {
    printf("error: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    fflush(stdout);
    exit(3);
}

static sqlite3 *open_loaded(const char *path) {
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("open", db);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_enable_load_extension(db, 1) != SQLITE_OK) die("enable_load_extension", db);
    if (sqlite3_load_extension(db, ext_path, NULL, &err) != SQLITE_OK) {
        printf("error: load_extension: %s\n", err ? err : "?");
        fflush(stdout);
        exit(3);
    }
    /* The handle SQLite got: dlopen of a loaded library returns the same one. */
    if (!ext_handle) ext_handle = dlopen(ext_path, RTLD_NOW | RTLD_NOLOAD);
    return db;
}

/* The first column of the first row of `sql`, as a malloc'd string. */
static char *query_text(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die(sql, db);
    if (sqlite3_step(st) != SQLITE_ROW) die(sql, db);
    const unsigned char *t = sqlite3_column_text(st, 0);
    char *out = strdup(t ? (const char *)t : "");
    sqlite3_finalize(st);
    return out;
}

static long long latest_id(sqlite3 *db) {
    char *t = query_text(db, "SELECT coalesce(max(id), 0) FROM honker_notifications");
    long long id = atoll(t);
    free(t);
    return id;
}

/* Print ready, block in honker_listen_wait and print its result. */
static void listen_and_print(sqlite3 *db, long long after) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT honker_listen_wait(?1, ?2, 10, 20000)", -1, &st, NULL) != SQLITE_OK)
        die("prepare listen_wait", db);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    printf("ready %lld %d\n", after, (int)gettid());
    fflush(stdout);
    if (sqlite3_step(st) != SQLITE_ROW) die("honker_listen_wait", db);
    printf("got %s\n", (const char *)sqlite3_column_text(st, 0));
    fflush(stdout);
    sqlite3_finalize(st);
}

struct waiter { sqlite3 *db; long long after; };

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    listen_and_print(w->db, w->after);
    return NULL;
}

static int run_close(const char *path) {
    sqlite3 *a = open_loaded(path);
    free(query_text(a, "SELECT honker_epoch()"));
    sqlite3 *b = open_loaded(path);
    struct waiter w = { b, latest_id(b) };
    pthread_t t;
    if (pthread_create(&t, NULL, waiter_main, &w) != 0) die("pthread_create", NULL);
    /* The test says when B is asleep in its wait; only then is A closed. */
    char line[64];
    if (!fgets(line, sizeof line, stdin)) die("read stdin", NULL);
    if (sqlite3_close(a) != SQLITE_OK) die("close A", a);
    printf("closed A\n");
    fflush(stdout);
    pthread_join(t, NULL);
    if (sqlite3_close(b) != SQLITE_OK) die("close B", b);
    printf("dlclose %d\n", __atomic_load_n(&ext_dlcloses, __ATOMIC_SEQ_CST));
    fflush(stdout);
    return 0;
}

static int run_fork(const char *path) {
    sqlite3 *a = open_loaded(path);
    free(query_text(a, "SELECT honker_wait(honker_epoch(), 10)"));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        /* A connection must not cross fork(): the child opens its own. */
        sqlite3 *c = open_loaded(path);
        listen_and_print(c, latest_id(c));
        if (sqlite3_close(c) != SQLITE_OK) die("close child", c);
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) die("waitpid", NULL);
    sqlite3_close(a);
    if (WIFSIGNALED(status)) {
        printf("child signal %d\n", WTERMSIG(status));
        fflush(stdout);
        return 4;
    }
    return WEXITSTATUS(status);
}

static int run_forkhold(const char *path) {
    sqlite3 *a = open_loaded(path);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a, "SELECT json_array_length(honker_claim(?1, 'forkhold', 1000, 600000))",
                           -1, &st, NULL) != SQLITE_OK)
        die("prepare claim", a);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) die("honker_claim", a);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        for (;;) pause();
    }
    printf("held %lld child %d\n", n, (int)pid);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: host <extension> <db> close|fork|forkhold <channel>\n");
        return 2;
    }
    ext_path = argv[1];
    channel = argv[4];
    if (strcmp(argv[3], "close") == 0) return run_close(argv[2]);
    if (strcmp(argv[3], "fork") == 0) return run_fork(argv[2]);
    if (strcmp(argv[3], "forkhold") == 0) return run_forkhold(argv[2]);
    fprintf(stderr, "unknown mode %s\n", argv[3]);
    return 2;
}
