/*
 * Thread hooks and the library's thread lifetime (issue 11): every thread
 * that runs a callback started with on_start, every started thread stops
 * with on_stop, and the threads end when everything is freed (so a host can
 * exit or unload the library), starting again with the next client. Its
 * own process: the hooks are process-wide. Needs FAL_RT_EMULATOR.
 */
#include "harness.h"
#include "mini_ws_server.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_starts, g_stops, g_unhooked_callbacks, g_hooked_callbacks;
static __thread int t_hooked;
static int g_tag;

static void on_start(void *ud) {
    if (ud != &g_tag) abort();
    t_hooked = 1;
    pthread_mutex_lock(&g_mu);
    g_starts++;
    pthread_mutex_unlock(&g_mu);
}

static void on_stop(void *ud) {
    if (ud != &g_tag || !t_hooked) abort();
    t_hooked = 0;
    pthread_mutex_lock(&g_mu);
    g_stops++;
    pthread_mutex_unlock(&g_mu);
}

static int counter(int *p) {
    pthread_mutex_lock(&g_mu);
    int v = *p;
    pthread_mutex_unlock(&g_mu);
    return v;
}

/* Called first by every callback below: was its thread hooked? */
static void seen_callback(void) {
    pthread_mutex_lock(&g_mu);
    if (t_hooked)
        g_hooked_callbacks++;
    else
        g_unhooked_callbacks++;
    pthread_mutex_unlock(&g_mu);
}

static void hook_on_result(void *ud, const fal_rt_message *m) {
    seen_callback();
    rec_on_result(ud, m);
}

static void hook_on_state(void *ud, fal_rt_state s) {
    seen_callback();
    (void)ud;
    (void)s;
}

static void hook_ws_on_message(void *ud, const uint8_t *data, size_t len, bool is_text) {
    seen_callback();
    (void)data;
    (void)len;
    (void)is_text;
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->results++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int hook_token(void *ud, const char *app, fal_rt_buffer *out) {
    seen_callback();
    (void)ud;
    (void)app;
    const char t[] = "not-a-token";
    return fal_rt_buffer_append(out, (const uint8_t *)t, sizeof t - 1) == FAL_RT_OK ? 0 : 1;
}

/* A free_user_data: counts the frees (runs on the thread that frees). */
static void count_free(void *ud) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->freed++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* One round: a realtime connection, a callback socket, and a session whose
 * token provider runs on a session blocking-pool thread; then free it all. */
static void round_trip(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.on_result = hook_on_result;
    h.on_state = hook_on_state;
    fal_rt_connect_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.throttle_ms = FAL_RT_THROTTLE_NONE;
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    CHECK(fal_rt_thread_count() > 0);
    /* Hooks cannot change while the threads run. */
    CHECK_RC(fal_rt_set_thread_hooks(NULL, NULL, NULL), FAL_RT_ALREADY_SET);

    recorder wr;
    recorder_init(&wr);
    fal_rt_ws_handler wh;
    memset(&wh, 0, sizeof wh);
    wh.struct_size = sizeof wh;
    wh.user_data = &wr;
    wh.on_message = hook_ws_on_message;
    wh.free_user_data = count_free;
    fal_rt_connect_options wo = o;
    wo.path = "/raw";
    fal_rt_ws *ws = NULL;
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &wo, &wh, &ws, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_send_text(ws, "hi", NULL), FAL_RT_OK);
    CHECK(wait_for(&wr, &wr.results, 1));

    fal_rt_connect_options so = o;
    so.token_provider = hook_token;
    fal_rt_session *s = NULL;
    /* The emulator opens with any token and answers the first input Unauthorized. */
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", &so, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_send_json(s, "{\"n\":2}", NULL), FAL_RT_OK);
    fal_rt_message *m = NULL;
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_AUTH);
    fal_rt_session_free(s);

    fal_rt_ws_free(ws);
    CHECK(read_int(&wr, &wr.freed) == 1);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    /* Everything is freed: the library's threads have ended. */
    CHECK(fal_rt_thread_count() == 0);
    CHECK(counter(&g_starts) > 0 && counter(&g_starts) == counter(&g_stops));
    recorder_destroy(&r);
    recorder_destroy(&wr);
}

static void test_hooks_and_thread_end(void) {
    CHECK(fal_rt_thread_count() == 0);
    CHECK_RC(fal_rt_set_thread_hooks(on_start, on_stop, &g_tag), FAL_RT_OK);
    round_trip();
    if (g_failures) return;
    int first = counter(&g_starts);
    /* The next client starts the threads again, with the hooks. */
    round_trip();
    if (g_failures) return;
    CHECK(counter(&g_starts) > first);
    CHECK(counter(&g_unhooked_callbacks) == 0);
    CHECK(counter(&g_hooked_callbacks) >= 4);
}

/* free from inside a callback, as the last object: the threads end soon after. */
static fal_rt_realtime *g_self;
static void free_self(void *ud, const fal_rt_message *m) {
    (void)m;
    fal_rt_realtime_free(g_self);
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void test_last_free_inside_callback(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.on_result = free_self;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &g_self, NULL), FAL_RT_OK);
    fal_rt_client_free(client); /* the connection is now the last object */
    CHECK_RC(fal_rt_realtime_send_json(g_self, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.done, 1));
    /* Bounded wait for the background stop. */
    for (int i = 0; i < WAIT_MS / 10 && fal_rt_thread_count() > 0; i++) sleep_ms(10);
    CHECK(fal_rt_thread_count() == 0);
    CHECK(counter(&g_starts) == counter(&g_stops));
    recorder_destroy(&r);
}

/* Bounded wait until the library's threads have ended. */
static int threads_ended(void) {
    for (int i = 0; i < WAIT_MS / 10 && fal_rt_thread_count() > 0; i++) sleep_ms(10);
    return fal_rt_thread_count() == 0;
}

/* Blocks its worker thread until the main thread sets `done`, which it does
 * only after its free_nowait returned. */
static void block_on_result(void *ud, const fal_rt_message *m) {
    (void)m;
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->results++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!wait_for(r, &r->done, 1)) {
        pthread_mutex_lock(&r->mu);
        r->errors++;
        pthread_mutex_unlock(&r->mu);
    }
}

/* The last free_nowait never waits for the runtime to stop, even while a
 * callback blocks one of its threads. */
static void test_last_free_nowait_does_not_wait(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.on_result = block_on_result;
    h.free_user_data = count_free;
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &conn, NULL), FAL_RT_OK);
    fal_rt_client_free(client); /* the connection is now the last object */
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    fal_rt_realtime_free_nowait(conn);
    /* Returned while the callback still blocks: its finalizer has not run. */
    int freed_early = read_int(&r, &r.freed);
    pthread_mutex_lock(&r.mu);
    r.done = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    CHECK(freed_early == 0);
    CHECK(wait_for(&r, &r.freed, 1));
    CHECK(read_int(&r, &r.errors) == 0);
    CHECK(threads_ended());
    CHECK(counter(&g_starts) == counter(&g_stops));
    recorder_destroy(&r);
}

/* A last free_nowait still sends its close frame (1000) before the runtime
 * stops. Steps that fail are counted (not returned from) so that the server
 * thread is always stopped. */
static void test_close_code_after_last_free_nowait(void) {
    for (int kind = 0; kind < 2; kind++) { /* 0: raw socket, 1: realtime connection */
        mini_ws_server srv;
        CHECK(mini_server_start(&srv));
        int step_failed = 0;
        fal_rt_client *client = mini_server_client(&srv);
        fal_rt_connect_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.header_auth = true;
        o.throttle_ms = FAL_RT_THROTTLE_NONE;
        if (client == NULL) {
            step_failed = 1;
        } else if (kind == 0) {
            fal_rt_ws *ws = NULL;
            if (fal_rt_ws_connect(client, "demo/echo", &o, NULL, &ws, NULL) != FAL_RT_OK ||
                fal_rt_ws_send_text(ws, "hi", NULL) != FAL_RT_OK || !wait_for(&srv.r, &srv.r.results, 1))
                step_failed = 1;
            fal_rt_client_free(client);
            fal_rt_ws_free_nowait(ws); /* the last object */
        } else {
            fal_rt_realtime_handler h;
            memset(&h, 0, sizeof h);
            h.struct_size = sizeof h;
            fal_rt_realtime *conn = NULL;
            if (fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL) != FAL_RT_OK ||
                fal_rt_realtime_send_json(conn, "{\"n\":1}", NULL) != FAL_RT_OK ||
                !wait_for(&srv.r, &srv.r.results, 1))
                step_failed = 1;
            fal_rt_client_free(client);
            fal_rt_realtime_free_nowait(conn); /* the last object */
        }
        mini_server_stop(&srv);
        if (srv.r.last_close_code != 1000)
            fprintf(stderr, "    kind %d: close code %d\n", kind, srv.r.last_close_code);
        CHECK(!step_failed);
        CHECK(srv.r.last_close_code == 1000);
        CHECK(threads_ended());
    }
    CHECK(counter(&g_starts) == counter(&g_stops));
}

/* A connect cancelled while its token provider blocks returns at once: the
 * provider is released by the test only after the connect returned. */
typedef struct cancel_ctx {
    recorder r; /* results: provider entered; closes: connect returned; done: release the provider */
    fal_rt_client *client;
    fal_rt_cancel_token *token;
    int ws;
    fal_rt_result rc;
} cancel_ctx;

static int blocking_token(void *ud, const char *app, fal_rt_buffer *out) {
    (void)app;
    (void)out;
    cancel_ctx *c = (cancel_ctx *)ud;
    pthread_mutex_lock(&c->r.mu);
    c->r.results++;
    pthread_cond_broadcast(&c->r.cv);
    pthread_mutex_unlock(&c->r.mu);
    if (!wait_for(&c->r, &c->r.done, 1)) {
        pthread_mutex_lock(&c->r.mu);
        c->r.errors++;
        pthread_mutex_unlock(&c->r.mu);
    }
    return 1;
}

static void *cancelled_connect_thread(void *arg) {
    cancel_ctx *c = (cancel_ctx *)arg;
    fal_rt_connect_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.token_provider = blocking_token;
    o.callbacks_user_data = c;
    o.free_callbacks_user_data = count_free; /* c starts with its recorder */
    o.cancel = c->token;
    fal_rt_result rc;
    if (c->ws) {
        fal_rt_ws *ws = NULL;
        o.path = "/raw";
        rc = fal_rt_ws_connect(c->client, "demo/echo", &o, NULL, &ws, NULL);
        if (rc == FAL_RT_OK) fal_rt_ws_free(ws);
    } else {
        fal_rt_session *s = NULL;
        rc = fal_rt_session_connect(c->client, "demo/echo", &o, &s, NULL);
        if (rc == FAL_RT_OK) fal_rt_session_free(s);
    }
    pthread_mutex_lock(&c->r.mu);
    c->rc = rc;
    c->r.closes = 1;
    pthread_cond_broadcast(&c->r.cv);
    pthread_mutex_unlock(&c->r.mu);
    return NULL;
}

static void test_cancelled_connect_returns_at_once(void) {
    for (int ws = 0; ws < 2; ws++) {
        cancel_ctx c;
        memset(&c, 0, sizeof c);
        recorder_init(&c.r);
        c.ws = ws;
        c.client = emulator_client();
        CHECK_RC(fal_rt_cancel_token_new(&c.token), FAL_RT_OK);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, cancelled_connect_thread, &c) == 0);
        int entered = wait_for(&c.r, &c.r.results, 1);
        CHECK_RC(fal_rt_cancel_token_cancel(c.token), FAL_RT_OK);
        /* The connect returns while the provider still blocks. */
        int returned = wait_for(&c.r, &c.r.closes, 1);
        pthread_mutex_lock(&c.r.mu);
        c.r.done = 1;
        pthread_cond_broadcast(&c.r.cv);
        pthread_mutex_unlock(&c.r.mu);
        pthread_join(t, NULL);
        CHECK(entered && returned);
        CHECK_RC(c.rc, FAL_RT_INTERRUPTED);
        /* The finalizer runs when the provider returns, on its thread. */
        CHECK(wait_for(&c.r, &c.r.freed, 1));
        CHECK(read_int(&c.r, &c.r.errors) == 0);
        fal_rt_cancel_token_free(c.token);
        fal_rt_client_free(c.client);
        CHECK(threads_ended());
        recorder_destroy(&c.r);
    }
    CHECK(counter(&g_starts) == counter(&g_stops));
}

/* free inside the encoder (a callback on the sending thread), as the last
 * object: the handle is released when the send returns, not while the send
 * still uses it, and the runtime stops in the background. */
static fal_rt_realtime *g_enc_self;
static int freeing_encoder(void *ud, const uint8_t *data, size_t len, fal_rt_buffer *out) {
    (void)ud;
    fal_rt_realtime_free(g_enc_self);
    /* Freed inside a callback: still readable, calls answer NOT_CONNECTED. */
    fal_rt_state st;
    if (fal_rt_realtime_state(g_enc_self, &st) != FAL_RT_NOT_CONNECTED) return 2;
    return fal_rt_buffer_append(out, data, len) == FAL_RT_OK ? 0 : 1;
}

static void test_last_free_inside_encoder(void) {
    fal_rt_client *client = emulator_client();
    recorder r, cbr;
    recorder_init(&r);
    recorder_init(&cbr);
    fal_rt_realtime_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.free_user_data = count_free;
    fal_rt_connect_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.encoder = freeing_encoder;
    o.callbacks_user_data = &cbr;
    o.free_callbacks_user_data = count_free;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &g_enc_self, NULL), FAL_RT_OK);
    fal_rt_client_free(client); /* the connection is now the last object */
    fal_rt_result rc = fal_rt_realtime_send_json(g_enc_self, "{\"n\":1}", NULL);
    CHECK(rc == FAL_RT_OK || rc == FAL_RT_NOT_CONNECTED);
    CHECK(wait_for(&r, &r.freed, 1));
    CHECK(wait_for(&cbr, &cbr.freed, 1));
    CHECK(threads_ended());
    CHECK(counter(&g_starts) == counter(&g_stops));
    recorder_destroy(&r);
    recorder_destroy(&cbr);
}

static void test_remove_hooks(void) {
    CHECK(fal_rt_thread_count() == 0);
    CHECK_RC(fal_rt_set_thread_hooks(NULL, NULL, NULL), FAL_RT_OK);
    int starts = counter(&g_starts);
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
    CHECK(counter(&g_starts) == starts);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"hooks_and_thread_end", test_hooks_and_thread_end},
        {"last_free_inside_callback", test_last_free_inside_callback},
        {"last_free_nowait_does_not_wait", test_last_free_nowait_does_not_wait},
        {"close_code_after_last_free_nowait", test_close_code_after_last_free_nowait},
        {"cancelled_connect_returns_at_once", test_cancelled_connect_returns_at_once},
        {"last_free_inside_encoder", test_last_free_inside_encoder},
        {"remove_hooks", test_remove_hooks},
    };
    return run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
}
