/*
 * honker_waiter: a port program holding one SQLite connection (the system libsqlite3) with the
 * honker extension loaded, for honker's blocking SQL functions (honker_claim_wait,
 * honker_listen_wait, honker_read_wait, honker_wait).
 *
 * Why a program of its own: erlang-p1-sqlite3 runs every connection's statements one after
 * another on the emulator's async machinery, so one wait of seconds there holds up every other
 * connection of the VM (measured: an enqueue on a second connection took 950 ms behind a 1 s
 * wait, with +A 1 and with +A 8). Here each waiter is an OS process: a wait blocks nothing but
 * itself, and killing the process ends the wait.
 *
 * Protocol, {packet, 4} both ways (4-byte big-endian length, then the bytes):
 *   request "O" <path> NUL <extension>  -> "O" | "E" <sqlite code> TAB <message>
 *   request "Q" <one SELECT statement>   -> "R" <first column as text> | "N" (NULL)
 *                                          | "E" <sqlite code> TAB <message>
 * End of input closes the connection and exits 0.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int read_full(unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One frame in one writev: a header written apart from its body lets the emulator wake, read 5
 * bytes, go back to polling and wake again for the rest (a second poll round on the wake path). */
static void write_frame(char tag, const char *body, size_t len) {
    uint32_t total = (uint32_t)(len + 1);
    unsigned char hdr[5] = {total >> 24, total >> 16, total >> 8, total, (unsigned char)tag};
    struct iovec iov[2] = {{hdr, 5}, {(void *)body, len}};
    int i = 0, count = len ? 2 : 1;
    while (i < count) {
        ssize_t w = writev(1, iov + i, count - i);
        if (w <= 0) exit(1);
        /* Advance past what was written (a pipe may take less than all of a large answer). */
        while (i < count && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < count) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
}

static void write_error(int code, const char *msg) {
    char *buf = sqlite3_mprintf("%d\t%s", code, msg ? msg : "");
    write_frame('E', buf, strlen(buf));
    sqlite3_free(buf);
}

int main(void) {
    sqlite3 *db = NULL;
    for (;;) {
        unsigned char hdr[4];
        if (read_full(hdr, 4) != 0) break;
        uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
        char *req = malloc((size_t)len + 1);
        if (!req || read_full((unsigned char *)req, len) != 0) break;
        req[len] = '\0';
        if (len >= 1 && req[0] == 'O' && db == NULL) {
            const char *path = req + 1;
            const char *ext = path + strlen(path) + 1;
            /* Prime: load the extension into an in-memory connection first (it loads
             * permanently), so a failing init on the file below cannot leave SQLite calling
             * into an unmapped library at close. */
            sqlite3 *mem = NULL;
            if (sqlite3_open(":memory:", &mem) == SQLITE_OK) {
                sqlite3_enable_load_extension(mem, 1);
                sqlite3_load_extension(mem, ext, NULL, NULL);
            }
            int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
            char *err = NULL;
            if (rc == SQLITE_OK) {
                sqlite3_busy_timeout(db, 5000);
                sqlite3_enable_load_extension(db, 1);
                rc = sqlite3_load_extension(db, ext, NULL, &err);
                sqlite3_enable_load_extension(db, 0);
            }
            if (rc == SQLITE_OK) {
                write_frame('O', "", 0);
            } else {
                write_error(rc, err ? err : sqlite3_errmsg(db));
                sqlite3_free(err);
            }
        } else if (len >= 1 && req[0] == 'Q' && db != NULL) {
            sqlite3_stmt *st = NULL;
            int rc = sqlite3_prepare_v2(db, req + 1, -1, &st, NULL);
            if (rc == SQLITE_OK) rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const unsigned char *t = sqlite3_column_text(st, 0);
                if (t) write_frame('R', (const char *)t, (size_t)sqlite3_column_bytes(st, 0));
                else write_frame('N', "", 0);
            } else {
                write_error(rc == SQLITE_DONE ? 0 : sqlite3_extended_errcode(db), sqlite3_errmsg(db));
            }
            sqlite3_finalize(st);
        } else {
            write_error(SQLITE_MISUSE, "bad request");
        }
        free(req);
    }
    if (db) sqlite3_close_v2(db);
    return 0;
}
