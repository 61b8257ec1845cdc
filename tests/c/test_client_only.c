/*
 * clientOnly through the C ABI: on a client made with
 * fal_rt_client_options.server_side, a realtime connection made with
 * fal_rt_connect_options.client_only never connects and drops its inputs
 * (counted in fal_rt_stats.inputs_dropped_client_only); elsewhere client_only
 * has no effect. Self-contained (not part of test_ffi.c).
 *
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/c/test_client_only.c \
 *      -Ltarget/release -lfal_realtime -Wl,-rpath,target/release -lpthread -o /tmp/t
 *   FAL_RT_EMULATOR=127.0.0.1:PORT /tmp/t
 *
 * Every wait is bounded.
 */
#define _POSIX_C_SOURCE 200809L

#include "fal_realtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed = 0, failed = 0;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "  CHECK failed %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                               \
        }                                                                           \
    } while (0)

static char run_host[160], rest_url[160];

static fal_rt_client *client(bool server_side) {
    fal_rt_client_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.key = "test-key";
    o.run_host = run_host;
    o.rest_url = rest_url;
    o.allow_insecure = true;
    o.server_side = server_side;
    fal_rt_client *c = NULL;
    if (fal_rt_client_new(&o, &c, NULL) != FAL_RT_OK) return NULL;
    return c;
}

static fal_rt_realtime *rt_connect(fal_rt_client *c, bool client_only) {
    fal_rt_connect_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.throttle_ms = FAL_RT_THROTTLE_NONE;
    o.client_only = client_only;
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    fal_rt_realtime *conn = NULL;
    if (fal_rt_realtime_connect(c, "owner/echo", &o, &h, &conn, NULL) != FAL_RT_OK) return NULL;
    return conn;
}

static int stats(fal_rt_realtime *conn, fal_rt_stats *st) {
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    return fal_rt_realtime_stats(conn, st) == FAL_RT_OK;
}

static int test_dropped_on_a_server_side_host(void) {
    fal_rt_client *c = client(true);
    CHECK(c != NULL);
    fal_rt_realtime *conn = rt_connect(c, true);
    CHECK(conn != NULL);
    for (int i = 0; i < 3; i++) CHECK(fal_rt_realtime_send_json(conn, "{\"i\": 1}", NULL) == FAL_RT_OK);
    /* Encoding errors are still reported. */
    CHECK(fal_rt_realtime_send_json(conn, "{not json", NULL) == FAL_RT_ENCODE);
    fal_rt_stats st;
    CHECK(stats(conn, &st));
    CHECK(st.inputs_dropped_client_only == 3);
    CHECK(st.frames_sent == 0 && st.connects == 0 && st.token_fetches == 0);
    fal_rt_state s;
    CHECK(fal_rt_realtime_state(conn, &s) == FAL_RT_OK && s == FAL_RT_STATE_IDLE);
    CHECK(fal_rt_realtime_close(conn) == FAL_RT_OK);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(c);
    return 0;
}

static int test_no_effect_elsewhere(void) {
    fal_rt_client *c = client(false);
    CHECK(c != NULL);
    fal_rt_realtime *conn = rt_connect(c, true);
    CHECK(conn != NULL);
    CHECK(fal_rt_realtime_send_json(conn, "{\"i\": 1}", NULL) == FAL_RT_OK);
    fal_rt_stats st;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        CHECK(stats(conn, &st));
        if (st.results == 1) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        CHECK(now.tv_sec - t0.tv_sec < 30); /* bounded */
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    CHECK(st.inputs_dropped_client_only == 0 && st.frames_sent == 1);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(c);
    return 0;
}

int main(void) {
    const char *h = getenv("FAL_RT_EMULATOR");
    if (h == NULL || h[0] == '\0') {
        fprintf(stderr, "set FAL_RT_EMULATOR=127.0.0.1:PORT\n");
        return 2;
    }
    snprintf(run_host, sizeof run_host, "ws://%s", h);
    snprintf(rest_url, sizeof rest_url, "http://%s", h);
    struct {
        const char *name;
        int (*fn)(void);
    } tests[] = {
        {"client_only is a no-op on a server-side host", test_dropped_on_a_server_side_host},
        {"client_only has no effect elsewhere", test_no_effect_elsewhere},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (tests[i].fn() == 0) {
            passed++;
            printf("ok - %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAILED - %s\n", tests[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
