/*
 * A tiny test harness for the C tests: CHECK macros, a registry of tests, a
 * recorder for callbacks (counters + condition variable), and the emulator address.
 * Every wait is bounded (WAIT_MS) so a broken test fails instead of hanging.
 */
#ifndef FAL_RT_TEST_HARNESS_H
#define FAL_RT_TEST_HARNESS_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "fal_realtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Generous: the tests also run under valgrind, 20-50x slower. */
#define WAIT_MS 60000

static int g_failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "    CHECK failed %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                            \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define CHECK_RC(expr, want)                                                             \
    do {                                                                                 \
        fal_rt_result rc_ = (expr);                                                      \
        if (rc_ != (want)) {                                                             \
            fprintf(stderr, "    CHECK_RC failed %s:%d: %s = %d (%s), want %s\n", __FILE__, \
                    __LINE__, #expr, (int)rc_, fal_rt_result_name(rc_), #want);          \
            g_failures++;                                                                \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* The emulator's host:port, from FAL_RT_EMULATOR. */
static inline const char *emulator_host(void) {
    const char *h = getenv("FAL_RT_EMULATOR");
    if (h == NULL || h[0] == '\0') {
        fprintf(stderr, "set FAL_RT_EMULATOR=127.0.0.1:PORT\n");
        exit(2);
    }
    return h;
}

/* Client options for the emulator with `key` (NULL: test-key); adjust, then fal_rt_client_new. */
static inline fal_rt_client_options emulator_client_options(const char *key) {
    static char run_host[128], rest_url[128];
    snprintf(run_host, sizeof run_host, "ws://%s", emulator_host());
    snprintf(rest_url, sizeof rest_url, "http://%s", emulator_host());
    fal_rt_client_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.key = key ? key : "test-key";
    o.run_host = run_host;
    o.rest_url = rest_url;
    o.allow_insecure = true;
    o.token_retries = -1;
    return o;
}

/* A client for the emulator with `key` (NULL: test-key). */
static inline fal_rt_client *emulator_client_with_key(const char *key) {
    fal_rt_client_options o = emulator_client_options(key);
    fal_rt_client *c = NULL;
    fal_rt_error *err = NULL;
    if (fal_rt_client_new(&o, &c, &err) != FAL_RT_OK) {
        fprintf(stderr, "client: %s\n", fal_rt_error_message(err));
        fal_rt_error_free(err);
        exit(2);
    }
    return c;
}

static inline fal_rt_client *emulator_client(void) { return emulator_client_with_key(NULL); }

static inline void deadline_in(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* What callbacks saw. Guarded by mu; cv is signalled on every change. */
typedef struct recorder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int results;
    int errors;
    int states[8];       /* count per fal_rt_state */
    int freed;           /* finalizer calls */
    int closes;          /* ws on_close calls */
    int last_close_code;
    fal_rt_result last_error_kind;
    uint16_t last_error_status;
    uint16_t last_error_close_code;
    char last_error[512];
    char last_error_body[512];
    char last_json[1024];
    char last_request_id[64];
    unsigned char last_bytes[256];
    size_t last_len;
    int last_is_text;
    int after_free_callbacks; /* callbacks seen after `done` was set */
    int done;
    /* Hooks for re-entrancy tests. */
    fal_rt_realtime *conn;
    fal_rt_ws *ws;
    fal_rt_session *session;
    int close_on_result;   /* call fal_rt_realtime_close in on_result */
    int free_on_result;    /* call fal_rt_realtime_free in on_result */
    int reply_on_message;  /* ws: send a text reply from on_message, once */
    fal_rt_result reentrant_rc;
    int per_thread_last[8]; /* last "n" seen per thread id, for ordering */
    int order_violations;
} recorder;

static inline void recorder_init(recorder *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    for (int i = 0; i < 8; i++) r->per_thread_last[i] = -1;
}

static inline void recorder_destroy(recorder *r) {
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* Wait until *field >= want (bounded). Returns 1 on success. */
static inline int wait_for(recorder *r, const int *field, int want) {
    struct timespec ts;
    deadline_in(&ts, WAIT_MS);
    pthread_mutex_lock(&r->mu);
    int ok = 1;
    while (*field < want) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0) {
            ok = *field >= want;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!ok) fprintf(stderr, "    timed out waiting (have %d, want %d)\n", *field, want);
    return ok;
}

static inline int read_int(recorder *r, const int *field) {
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* Extract the integer after "key": in a flat JSON text; -1 if absent. */
static inline int json_int(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? atoi(p + strlen(pat)) : -1;
}

/* Callbacks recording into a recorder (user_data). */
static inline void rec_on_result(void *ud, const fal_rt_message *m) {
    recorder *r = (recorder *)ud;
    char *json = NULL;
    size_t json_len = 0;
    fal_rt_result rc = fal_rt_message_to_json(m, &json, &json_len, NULL);
    size_t len = 0;
    const uint8_t *data = fal_rt_message_data(m, &len);
    size_t id_len = 0;
    const char *id = fal_rt_message_request_id(m, &id_len);
    pthread_mutex_lock(&r->mu);
    if (r->done) r->after_free_callbacks++;
    r->results++;
    if (rc == FAL_RT_OK) {
        snprintf(r->last_json, sizeof r->last_json, "%s", json);
        int t = json_int(json, "t"), n = json_int(json, "n");
        if (t >= 0 && t < 8) {
            if (n <= r->per_thread_last[t]) r->order_violations++;
            r->per_thread_last[t] = n;
        }
    }
    r->last_len = len < sizeof r->last_bytes ? len : sizeof r->last_bytes;
    if (data) memcpy(r->last_bytes, data, r->last_len);
    if (id) snprintf(r->last_request_id, sizeof r->last_request_id, "%.*s", (int)id_len, id);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    fal_rt_string_free(json);
    if (r->close_on_result) {
        r->close_on_result = 0;
        r->reentrant_rc = fal_rt_realtime_close(r->conn);
    }
    if (r->session) {
        fal_rt_message *msg = NULL;
        r->reentrant_rc = fal_rt_session_recv(r->session, 0, &msg, NULL);
        fal_rt_message_free(msg);
        r->session = NULL;
    }
    if (r->free_on_result) {
        r->free_on_result = 0;
        fal_rt_realtime *c = r->conn;
        r->conn = NULL;
        fal_rt_realtime_free(c); /* deferred: we are inside its callback */
        pthread_mutex_lock(&r->mu);
        r->done = 1;
        pthread_mutex_unlock(&r->mu);
    }
}

static inline void rec_on_error(void *ud, const fal_rt_error *e) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    if (r->done) r->after_free_callbacks++;
    r->errors++;
    r->last_error_kind = fal_rt_error_kind(e);
    r->last_error_status = fal_rt_error_status(e);
    r->last_error_close_code = fal_rt_error_close_code(e);
    snprintf(r->last_error, sizeof r->last_error, "%s", fal_rt_error_message(e));
    const char *body = fal_rt_error_body(e);
    snprintf(r->last_error_body, sizeof r->last_error_body, "%s", body ? body : "");
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static inline void rec_on_state(void *ud, fal_rt_state s) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    if (r->done) r->after_free_callbacks++;
    if (s >= 0 && s < 8) r->states[s]++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static inline void rec_free(void *ud) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->freed++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static inline fal_rt_realtime_handler rec_handler(recorder *r) {
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = r;
    h.on_result = rec_on_result;
    h.on_error = rec_on_error;
    h.on_state = rec_on_state;
    h.free_user_data = rec_free;
    return h;
}

static inline fal_rt_connect_options no_throttle(void) {
    fal_rt_connect_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.throttle_ms = FAL_RT_THROTTLE_NONE;
    return o;
}

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    test_fn fn;
} test_case;

/* Run the tests named on the command line (all without arguments). */
static inline int run_tests(const test_case *tests, size_t n, int argc, char **argv) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int selected = argc <= 1;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], tests[i].name) == 0) selected = 1;
        if (!selected) continue;
        int before = g_failures;
        tests[i].fn();
        if (g_failures == before) {
            printf("ok - %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL - %s\n", tests[i].name);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

#endif
