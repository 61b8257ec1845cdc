/*
 * The C side of the benchmark: our C API (include/fal_realtime.h) from a C
 * program. Speaks the harness's one command line (see bench/src/lib.rs) plus
 * `--style session|callback`, and prints one JSON line.
 *
 *   session   fal_rt_session_connect, then fal_rt_session_send / _recv on this thread
 *   callback  fal_rt_realtime_connect (throttle off); the on_result callback
 *             checks the result and sends the next input from inside the callback
 *
 * Inputs are {"request_id": str, "data": <64-byte str | 256 KiB bin>}, encoded
 * to msgpack by hand into one reusable buffer (what a C caller would do).
 *
 * Build: cc -O2 -I include bench/clients/c_client.c -L target/release -lfal_realtime -lpthread
 */
#define _GNU_SOURCE
#include "fal_realtime.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define SMALL_LEN 64
#define LARGE_LEN (256 * 1024)

typedef struct {
    const char *host, *scheme, *ca, *app, *key, *auth, *payload, *workload, *style, *label;
    long n, warmup, window;
} opts_t;

static opts_t o = {"127.0.0.1:8080", "ws", NULL, "me/echo", "test-key", "header", "small", "seq",
                   "session", "", 2000, 3000, 32};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t fl = strlen(field);
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static void die(const char *what, fal_rt_result rc, fal_rt_error *err) {
    const char *msg = err ? fal_rt_error_message(err) : fal_rt_result_name(rc);
    printf("{\"client\":\"c-%s\",\"error\":\"%s: %s\"}\n", o.style, what, msg ? msg : "?");
    fprintf(stderr, "c-%s: %s: %s (%d)\n", o.style, what, msg ? msg : "?", (int)rc);
    fflush(stdout);
    exit(1);
}

/* ------------------------------------------------------------------ msgpack */

static uint8_t *g_data; /* the payload */
static size_t g_data_len;
static uint8_t *g_buf; /* encode buffer */

static size_t encode(uint8_t *out, const char *id) {
    size_t p = 0, idl = strlen(id);
    out[p++] = 0x82;
    out[p++] = 0xa0 | 10;
    memcpy(out + p, "request_id", 10);
    p += 10;
    out[p++] = 0xd9; /* str8: ids are short */
    out[p++] = (uint8_t)idl;
    memcpy(out + p, id, idl);
    p += idl;
    out[p++] = 0xa4;
    memcpy(out + p, "data", 4);
    p += 4;
    if (g_data_len == SMALL_LEN) {
        out[p++] = 0xd9;
        out[p++] = SMALL_LEN;
    } else {
        out[p++] = 0xc6;
        out[p++] = (uint8_t)(g_data_len >> 24);
        out[p++] = (uint8_t)(g_data_len >> 16);
        out[p++] = (uint8_t)(g_data_len >> 8);
        out[p++] = (uint8_t)g_data_len;
    }
    memcpy(out + p, g_data, g_data_len);
    return p + g_data_len;
}

static int id_is(const fal_rt_message *m, const char *expect) {
    size_t len = 0;
    const char *id = fal_rt_message_request_id(m, &len);
    return id && len == strlen(expect) && memcmp(id, expect, len) == 0;
}

/* ------------------------------------------------------------------ report */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, long n, double p) {
    long rank = (long)((p / 100.0) * n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1] / 1000.0;
}

static void report(const char *client, uint64_t *s, long n, double wall, double cpu, double first_us) {
    double sum = 0;
    qsort(s, (size_t)n, sizeof *s, cmp_u64);
    for (long i = 0; i < n; i++) sum += (double)s[i];
    printf("{\"client\":\"%s\",\"label\":\"%s\",\"workload\":\"%s\",\"payload\":\"%s\",\"scheme\":\"%s\","
           "\"latency_us\":{\"n\":%ld,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"mean\":%.3f,"
           "\"min\":%.3f,\"max\":%.3f},\"throughput_msgs_s\":%.3f,\"wall_s\":%.6f,\"cpu_s\":%.6f,"
           "\"cpu_us_per_msg\":%.3f,\"peak_rss_kib\":%ld",
           client, o.label, o.workload, o.payload, o.scheme, n, pct(s, n, 50), pct(s, n, 90), pct(s, n, 99),
           pct(s, n, 99.9), n ? sum / n / 1000.0 : 0, n ? s[0] / 1000.0 : 0, n ? s[n - 1] / 1000.0 : 0,
           wall > 0 ? n / wall : 0, wall, cpu, cpu * 1e6 / (n ? n : 1), status_kib("VmHWM"));
    if (first_us >= 0) printf(",\"first_us\":%.3f", first_us);
    printf("}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------ setup */

static fal_rt_client *make_client(void) {
    char run_host[300], rest[300];
    fal_rt_client_options co;
    fal_rt_client *c = NULL;
    fal_rt_error *err = NULL;
    fal_rt_result rc;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.key = o.key;
    if (strcmp(o.scheme, "wss") == 0) {
        snprintf(run_host, sizeof run_host, "%s", o.host);
        snprintf(rest, sizeof rest, "https://%s", o.host);
        co.extra_ca_file = o.ca;
    } else {
        snprintf(run_host, sizeof run_host, "ws://%s", o.host);
        snprintf(rest, sizeof rest, "http://%s", o.host);
        co.allow_insecure = true;
    }
    co.run_host = run_host;
    co.rest_url = rest;
    rc = fal_rt_client_new(&co, &c, &err);
    if (rc != FAL_RT_OK) die("client_new", rc, err);
    return c;
}

static fal_rt_connect_options connect_options(void) {
    fal_rt_connect_options opt;
    memset(&opt, 0, sizeof opt);
    opt.struct_size = sizeof opt;
    opt.throttle_ms = FAL_RT_THROTTLE_NONE;
    opt.header_auth = strcmp(o.auth, "jwt") != 0;
    return opt;
}

/* ------------------------------------------------------------------ session style */

static void session_send(fal_rt_session *s, const char *id) {
    fal_rt_error *err = NULL;
    size_t len = encode(g_buf, id);
    fal_rt_result rc = fal_rt_session_send(s, g_buf, len, &err);
    if (rc != FAL_RT_OK) die("session_send", rc, err);
}

static void session_recv(fal_rt_session *s, const char *expect) {
    fal_rt_message *m = NULL;
    fal_rt_error *err = NULL;
    fal_rt_result rc = fal_rt_session_recv(s, 30000, &m, &err);
    if (rc != FAL_RT_OK) die("session_recv", rc, err);
    if (!id_is(m, expect)) die("session_recv: wrong request_id", FAL_RT_INTERNAL, NULL);
    fal_rt_message_free(m);
}

static fal_rt_session *session_open(fal_rt_client *c) {
    fal_rt_connect_options opt = connect_options();
    fal_rt_session *s = NULL;
    fal_rt_error *err = NULL;
    fal_rt_result rc = fal_rt_session_connect(c, o.app, &opt, &s, &err);
    if (rc != FAL_RT_OK) die("session_connect", rc, err);
    return s;
}

static void run_session(void) {
    long total = o.warmup + o.n;
    uint64_t *s = calloc((size_t)(o.n ? o.n : 1), sizeof *s);
    char id[32], expect[32];
    double w0 = 0, c0 = 0;
    if (strcmp(o.workload, "cold") == 0) {
        double first = -1;
        w0 = now_ns() / 1e9;
        c0 = cpu_seconds();
        for (long i = 0; i < o.n; i++) {
            fal_rt_client *c = make_client();
            uint64_t t = now_ns();
            fal_rt_session *ses = session_open(c);
            snprintf(id, sizeof id, "cold%ld", i);
            session_send(ses, id);
            session_recv(ses, id);
            s[i] = now_ns() - t;
            if (i == 0) first = s[0] / 1000.0;
            fal_rt_session_free(ses);
            fal_rt_client_free(c);
        }
        report("c-session", s, o.n, now_ns() / 1e9 - w0, cpu_seconds() - c0, first);
        return;
    }
    fal_rt_client *c = make_client();
    fal_rt_session *ses = session_open(c);
    if (strcmp(o.workload, "seq") == 0) {
        for (long i = 0; i < total; i++) {
            if (i == o.warmup) {
                w0 = now_ns() / 1e9;
                c0 = cpu_seconds();
            }
            snprintf(id, sizeof id, "r%ld", i);
            uint64_t t = now_ns();
            session_send(ses, id);
            session_recv(ses, id);
            if (i >= o.warmup) s[i - o.warmup] = now_ns() - t;
        }
    } else {
        uint64_t *sent = calloc((size_t)total, sizeof *sent);
        long next = 0;
        while (next < total && next < o.window) {
            snprintf(id, sizeof id, "r%ld", next);
            sent[next] = now_ns();
            session_send(ses, id);
            next++;
        }
        for (long r = 0; r < total; r++) {
            if (r == o.warmup) {
                w0 = now_ns() / 1e9;
                c0 = cpu_seconds();
            }
            snprintf(expect, sizeof expect, "r%ld", r);
            session_recv(ses, expect);
            if (r >= o.warmup) s[r - o.warmup] = now_ns() - sent[r];
            if (next < total) {
                snprintf(id, sizeof id, "r%ld", next);
                sent[next] = now_ns();
                session_send(ses, id);
                next++;
            }
        }
        free(sent);
    }
    double wall = now_ns() / 1e9 - w0, cpu = cpu_seconds() - c0;
    fal_rt_session_close(ses, NULL);
    fal_rt_session_free(ses);
    fal_rt_client_free(c);
    report("c-session", s, o.n, wall, cpu, -1);
}

/* ------------------------------------------------------------------ callback style */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fal_rt_realtime *conn;
    int opened, done;
    long window, total, next, received;
    uint64_t *sent, *samples;
    double w0, c0;
    char error[256];
    const char *expect_cold;
} cb_t;

static void cb_finish(cb_t *st, const char *error) {
    if (error && !st->error[0]) snprintf(st->error, sizeof st->error, "%s", error);
    st->done = 1;
    pthread_cond_signal(&st->cv);
}

static void cb_send_next(cb_t *st) {
    char id[32];
    fal_rt_error *err = NULL;
    snprintf(id, sizeof id, "r%ld", st->next);
    size_t len = encode(g_buf, id);
    st->sent[st->next] = now_ns();
    fal_rt_result rc = fal_rt_realtime_send(st->conn, g_buf, len, &err);
    if (rc != FAL_RT_OK) {
        cb_finish(st, "send failed");
        if (err) fal_rt_error_free(err);
        return;
    }
    st->next++;
}

static void on_result(void *ud, const fal_rt_message *m) {
    cb_t *st = ud;
    uint64_t t = now_ns();
    char expect[32];
    pthread_mutex_lock(&st->mu);
    if (st->expect_cold) { /* cold start: one result */
        if (!id_is(m, st->expect_cold)) cb_finish(st, "wrong request_id");
        st->samples[0] = t;
        cb_finish(st, NULL);
        pthread_mutex_unlock(&st->mu);
        return;
    }
    if (!st->opened) {
        st->opened = 1;
        if (!id_is(m, "open")) cb_finish(st, "wrong request_id (open)");
        if (o.warmup == 0) {
            st->w0 = now_ns() / 1e9;
            st->c0 = cpu_seconds();
        }
        while (!st->done && st->next < st->total && st->next < st->window) cb_send_next(st);
        pthread_mutex_unlock(&st->mu);
        return;
    }
    snprintf(expect, sizeof expect, "r%ld", st->received);
    if (!id_is(m, expect)) {
        cb_finish(st, "wrong request_id");
        pthread_mutex_unlock(&st->mu);
        return;
    }
    if (st->received >= o.warmup) st->samples[st->received - o.warmup] = t - st->sent[st->received];
    st->received++;
    if (st->received == o.warmup) {
        st->w0 = now_ns() / 1e9;
        st->c0 = cpu_seconds();
    }
    if (st->received == st->total) {
        st->w0 = now_ns() / 1e9 - st->w0; /* becomes the wall time */
        st->c0 = cpu_seconds() - st->c0;
        cb_finish(st, NULL);
    } else if (st->next < st->total) {
        cb_send_next(st);
    }
    pthread_mutex_unlock(&st->mu);
}

static void on_error(void *ud, const fal_rt_error *e) {
    cb_t *st = ud;
    pthread_mutex_lock(&st->mu);
    cb_finish(st, fal_rt_error_message(e));
    pthread_mutex_unlock(&st->mu);
}

static fal_rt_realtime *cb_connect(fal_rt_client *c, cb_t *st) {
    fal_rt_connect_options opt = connect_options();
    fal_rt_realtime_handler h;
    fal_rt_error *err = NULL;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = st;
    h.on_result = on_result;
    h.on_error = on_error;
    fal_rt_result rc = fal_rt_realtime_connect(c, o.app, &opt, &h, &st->conn, &err);
    if (rc != FAL_RT_OK) die("realtime_connect", rc, err);
    return st->conn;
}

static void cb_wait(cb_t *st) {
    pthread_mutex_lock(&st->mu);
    while (!st->done) pthread_cond_wait(&st->cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
    if (st->error[0]) {
        printf("{\"client\":\"c-callback\",\"error\":\"%s\"}\n", st->error);
        exit(1);
    }
}

static void run_callback(void) {
    cb_t st;
    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    if (strcmp(o.workload, "cold") == 0) {
        uint64_t *s = calloc((size_t)o.n, sizeof *s), slot = 0;
        double first = -1, w0 = now_ns() / 1e9, c0 = cpu_seconds();
        char id[32];
        for (long i = 0; i < o.n; i++) {
            fal_rt_client *c = make_client();
            fal_rt_error *err = NULL;
            snprintf(id, sizeof id, "cold%ld", i);
            st.done = 0;
            st.expect_cold = id;
            st.samples = &slot;
            uint64_t t = now_ns();
            cb_connect(c, &st);
            size_t len = encode(g_buf, id);
            fal_rt_result rc = fal_rt_realtime_send(st.conn, g_buf, len, &err);
            if (rc != FAL_RT_OK) die("realtime_send", rc, err);
            cb_wait(&st);
            s[i] = slot - t;
            if (i == 0) first = s[0] / 1000.0;
            fal_rt_realtime_free(st.conn);
            fal_rt_client_free(c);
        }
        report("c-callback", s, o.n, now_ns() / 1e9 - w0, cpu_seconds() - c0, first);
        return;
    }
    st.window = strcmp(o.workload, "pipe") == 0 ? o.window : 1;
    st.total = o.warmup + o.n;
    st.sent = calloc((size_t)st.total, sizeof *st.sent);
    st.samples = calloc((size_t)o.n, sizeof *st.samples);
    fal_rt_client *c = make_client();
    cb_connect(c, &st);
    {
        fal_rt_error *err = NULL;
        size_t len = encode(g_buf, "open");
        pthread_mutex_lock(&st.mu);
        fal_rt_result rc = fal_rt_realtime_send(st.conn, g_buf, len, &err);
        pthread_mutex_unlock(&st.mu);
        if (rc != FAL_RT_OK) die("realtime_send", rc, err);
    }
    cb_wait(&st);
    fal_rt_realtime_free(st.conn);
    fal_rt_client_free(c);
    report("c-callback", st.samples, o.n, st.w0, st.c0, -1);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = NULL;
        char name[64];
        if (strncmp(f, "--", 2) != 0) {
            fprintf(stderr, "unexpected argument %s\n", f);
            return 2;
        }
        f += 2;
        const char *eq = strchr(f, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - f), f);
            v = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", f);
            if (i + 1 >= argc) {
                fprintf(stderr, "--%s needs a value\n", name);
                return 2;
            }
            v = argv[++i];
        }
#define S(k) else if (strcmp(name, #k) == 0) o.k = v;
#define N(k) else if (strcmp(name, #k) == 0) o.k = strtol(v, NULL, 10);
        if (0) {}
        S(host) S(scheme) S(ca) S(app) S(key) S(auth) S(payload) S(workload) S(style) S(label)
        N(n) N(warmup) N(window)
        /* other common options (fan-out) do not apply here */
#undef S
#undef N
    }
    if (o.n < 1) o.n = 1;
    g_data_len = strcmp(o.payload, "large") == 0 ? LARGE_LEN : SMALL_LEN;
    g_data = malloc(g_data_len);
    for (size_t i = 0; i < g_data_len; i++) g_data[i] = g_data_len == SMALL_LEN ? (uint8_t)('a' + i % 26) : (uint8_t)i;
    g_buf = malloc(g_data_len + 128);
    if (strcmp(o.style, "session") == 0)
        run_session();
    else if (strcmp(o.style, "callback") == 0)
        run_callback();
    else {
        fprintf(stderr, "unknown --style %s: session or callback\n", o.style);
        return 2;
    }
    return 0;
}
