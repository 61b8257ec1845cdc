/*
 * C tests of the fal-realtime ABI against the emulator (FAL_RT_EMULATOR=127.0.0.1:PORT):
 * life cycle, results, errors, re-entrancy, threads, free while in flight, NULL arguments.
 * Run under AddressSanitizer/UBSan and valgrind by scripts/test-c.sh.
 */
#include "harness.h"

/* ------------------------------------------------------------------------ */
/* Version and result names                                                  */

static void test_version(void) {
    CHECK(strcmp(fal_rt_version(), FAL_RT_VERSION_STRING) == 0);
    CHECK(fal_rt_version_number() == FAL_RT_VERSION_NUMBER);
    CHECK(strcmp(fal_rt_result_name(FAL_RT_OK), "ok") == 0);
    CHECK(strcmp(fal_rt_result_name(FAL_RT_NOT_CONNECTED), "not_connected") == 0);
    CHECK(strcmp(fal_rt_result_name(12345), "unknown") == 0);
}

/* ------------------------------------------------------------------------ */
/* NULL arguments, bad sizes, invalid UTF-8; out-params untouched on failure */

static void test_null_arguments(void) {
    fal_rt_client *sentinel_client = (fal_rt_client *)0x1;
    fal_rt_client *client = sentinel_client;
    fal_rt_error *err = NULL;

    CHECK_RC(fal_rt_client_new(NULL, NULL, &err), FAL_RT_NULL_ARGUMENT);
    CHECK(err != NULL);
    CHECK(fal_rt_error_kind(err) == FAL_RT_NULL_ARGUMENT);
    CHECK(strstr(fal_rt_error_message(err), "out") != NULL);
    fal_rt_error_free(err);
    err = NULL;

    fal_rt_client_options bad;
    memset(&bad, 0, sizeof bad); /* struct_size 0 */
    CHECK_RC(fal_rt_client_new(&bad, &client, &err), FAL_RT_BAD_STRUCT_SIZE);
    CHECK(client == sentinel_client); /* out untouched on failure */
    fal_rt_error_free(err);
    err = NULL;

    client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_realtime *conn = (fal_rt_realtime *)0x1;

    /* A NULL handler takes nothing. */
    CHECK_RC(fal_rt_realtime_connect(client, "a/echo", NULL, NULL, &conn, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK(r.freed == 0);
    /* With a handler, ownership passes: the finalizer runs once even on failure. */
    CHECK_RC(fal_rt_realtime_connect(NULL, "a/echo", NULL, &h, &conn, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK(r.freed == 1);
    CHECK_RC(fal_rt_realtime_connect(client, NULL, NULL, &h, &conn, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_realtime_connect(client, "a/echo", NULL, &h, NULL, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK(r.freed == 3);
    CHECK(conn == (fal_rt_realtime *)0x1);
    const char bad_utf8[] = {'a', '/', (char)0xff, 0};
    CHECK_RC(fal_rt_realtime_connect(client, bad_utf8, NULL, &h, &conn, &err), FAL_RT_INVALID_UTF8);
    CHECK(fal_rt_error_kind(err) == FAL_RT_INVALID_UTF8);
    fal_rt_error_free(err);
    err = NULL;
    CHECK(r.freed == 4);

    /* Calls on NULL handles. */
    CHECK_RC(fal_rt_realtime_send(NULL, (const uint8_t *)"\x80", 1, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_realtime_send_json(NULL, "{}", NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_realtime_close(NULL), FAL_RT_NULL_ARGUMENT);
    fal_rt_state st = FAL_RT_STATE_OPEN;
    CHECK_RC(fal_rt_realtime_state(NULL, &st), FAL_RT_NULL_ARGUMENT);
    CHECK(st == FAL_RT_STATE_OPEN);
    fal_rt_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK_RC(fal_rt_realtime_stats(NULL, &stats), FAL_RT_NULL_ARGUMENT);
    fal_rt_message *msg = (fal_rt_message *)0x1;
    CHECK_RC(fal_rt_session_recv(NULL, 0, &msg, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK(msg == (fal_rt_message *)0x1);
    CHECK_RC(fal_rt_session_send_json(NULL, "{}", NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_session_close(NULL, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_ws_send_text(NULL, "x", NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_ws_send_binary(NULL, NULL, 0, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_ws_close(NULL, NULL), FAL_RT_NULL_ARGUMENT);
    fal_rt_frame *frame = NULL;
    CHECK_RC(fal_rt_ws_recv(NULL, 0, &frame, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_buffer_append(NULL, (const uint8_t *)"x", 1), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_buffer_set_text(NULL, true), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_message_to_json(NULL, NULL, NULL, NULL), FAL_RT_NULL_ARGUMENT);

    /* Accessors with NULL. */
    size_t len = 77;
    CHECK(fal_rt_message_data(NULL, &len) == NULL && len == 77);
    CHECK(fal_rt_message_request_id(NULL, &len) == NULL && len == 77);
    CHECK(fal_rt_message_clone(NULL) == NULL);
    CHECK(fal_rt_frame_data(NULL, &len) == NULL && len == 77);
    CHECK(!fal_rt_frame_is_text(NULL));
    CHECK(fal_rt_error_kind(NULL) == FAL_RT_NULL_ARGUMENT);
    CHECK(fal_rt_error_message(NULL) == NULL);
    CHECK(fal_rt_error_body(NULL) == NULL);
    CHECK(fal_rt_error_status(NULL) == 0 && fal_rt_error_close_code(NULL) == 0);
    CHECK(fal_rt_error_clone(NULL) == NULL);

    /* Every free accepts NULL. */
    fal_rt_client_free(NULL);
    fal_rt_realtime_free(NULL);
    fal_rt_realtime_free_nowait(NULL);
    fal_rt_session_free(NULL);
    fal_rt_ws_free(NULL);
    fal_rt_ws_free_nowait(NULL);
    fal_rt_message_free(NULL);
    fal_rt_frame_free(NULL);
    fal_rt_error_free(NULL);
    fal_rt_string_free(NULL);

    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_client_options(void) {
    fal_rt_client_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.key = "k";
    o.run_host = "ws://emulator.invalid:1";
    o.rest_url = "http://emulator.invalid:1";
    fal_rt_client *c = NULL;
    fal_rt_error *err = NULL;
    /* Plain ws:// to a host that is not loopback needs allow_insecure. */
    CHECK_RC(fal_rt_client_new(&o, &c, &err), FAL_RT_INVALID_ARGUMENT);
    CHECK(strstr(fal_rt_error_message(err), "allow_insecure") != NULL);
    fal_rt_error_free(err);
    err = NULL;
    o.allow_insecure = true;
    o.extra_ca_file = "/nonexistent/ca.pem";
    CHECK_RC(fal_rt_client_new(&o, &c, &err), FAL_RT_INVALID_ARGUMENT);
    fal_rt_error_free(err);
    o.extra_ca_file = NULL;
    CHECK_RC(fal_rt_client_new(&o, &c, NULL), FAL_RT_OK);
    CHECK(c != NULL);
    fal_rt_client_free(c);
    /* A loopback host needs no flag: a token in clear never leaves the machine. */
    o.allow_insecure = false;
    o.run_host = "ws://127.0.0.1:1";
    o.rest_url = "http://127.0.0.1:1";
    c = NULL;
    CHECK_RC(fal_rt_client_new(&o, &c, NULL), FAL_RT_OK);
    fal_rt_client_free(c);
}

/* ------------------------------------------------------------------------ */
/* Realtime: results                                                         */

static void test_realtime_results(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &r.conn, NULL), FAL_RT_OK);
    fal_rt_state st;
    CHECK_RC(fal_rt_realtime_state(r.conn, &st), FAL_RT_OK);
    CHECK(st == FAL_RT_STATE_IDLE);

    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"prompt\":\"a cat\",\"request_id\":\"req-1\",\"n\":0}", NULL),
             FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    CHECK(strstr(r.last_json, "\"prompt\":\"a cat\"") != NULL);
    CHECK(strcmp(r.last_request_id, "req-1") == 0);
    CHECK((r.last_bytes[0] & 0xf0) == 0x80); /* a msgpack fixmap, untouched */
    CHECK(read_int(&r, &r.states[FAL_RT_STATE_OPEN]) == 1);
    CHECK(read_int(&r, &r.states[FAL_RT_STATE_AUTHENTICATING]) == 1);

    /* Open now: every unthrottled send is delivered, in order. */
    for (int i = 1; i <= 4; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"t\":0,\"n\":%d}", i);
        CHECK_RC(fal_rt_realtime_send_json(r.conn, json, NULL), FAL_RT_OK);
    }
    CHECK(wait_for(&r, &r.results, 5));
    CHECK(r.order_violations == 0);
    CHECK(r.per_thread_last[0] == 4);

    /* Raw msgpack: {"a": 1} comes back byte for byte. */
    const uint8_t mp[] = {0x81, 0xa1, 'a', 0x01};
    CHECK_RC(fal_rt_realtime_send(r.conn, mp, sizeof mp, NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 6));
    pthread_mutex_lock(&r.mu);
    int same = r.last_len == sizeof mp && memcmp(r.last_bytes, mp, sizeof mp) == 0;
    pthread_mutex_unlock(&r.mu);
    CHECK(same);
    CHECK(strcmp(r.last_json, "{\"a\":1}") == 0);

    fal_rt_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(fal_rt_realtime_stats(r.conn, &s), FAL_RT_OK);
    CHECK(s.struct_size == sizeof s);
    CHECK(s.results == 6 && s.frames_sent == 6 && s.connects == 1 && s.errors == 0);
    CHECK(s.last_server_timing_us == -1);

    /* Invalid JSON is refused at once with a message. */
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{nope", &err), FAL_RT_ENCODE);
    CHECK(strstr(fal_rt_error_message(err), "JSON") != NULL);
    fal_rt_error_free(err);

    CHECK_RC(fal_rt_realtime_close(r.conn), FAL_RT_OK);
    CHECK(wait_for(&r, &r.states[FAL_RT_STATE_CLOSED], 1));
    fal_rt_realtime_free(r.conn);
    /* free returned: the finalizer ran. */
    CHECK(r.freed == 1);
    CHECK(r.errors == 0);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

/* A message kept beyond its callback with fal_rt_message_clone. */
static fal_rt_message *g_kept = NULL;
static void keep_result(void *ud, const fal_rt_message *m) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    if (g_kept == NULL) g_kept = fal_rt_message_clone(m);
    r->results++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void test_message_clone(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    h.on_result = keep_result;
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"keep\":[1,2,3]}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    /* Still valid after the connection and client are gone. */
    char *json = NULL;
    size_t len = 0;
    CHECK_RC(fal_rt_message_to_json(g_kept, &json, &len, NULL), FAL_RT_OK);
    CHECK(strcmp(json, "{\"keep\":[1,2,3]}") == 0 && len == strlen(json));
    fal_rt_string_free(json);
    fal_rt_message_free(g_kept);
    g_kept = NULL;
    recorder_destroy(&r);
}

/* ------------------------------------------------------------------------ */
/* Realtime: errors                                                          */

static void test_bad_app_id(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_realtime *conn = NULL;
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "not-an-app-id", NULL, &h, &conn, &err), FAL_RT_INVALID_ARGUMENT);
    CHECK(conn == NULL);
    CHECK(fal_rt_error_kind(err) == FAL_RT_INVALID_ARGUMENT);
    CHECK(strstr(fal_rt_error_message(err), "Invalid app id") != NULL);
    fal_rt_error_free(err);
    CHECK(r.freed == 1);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_bad_max_buffering(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    int bad[] = {61, -1, 1000};
    for (int i = 0; i < 3; i++) {
        o.max_buffering = bad[i];
        fal_rt_realtime *conn = NULL;
        fal_rt_error *err = NULL;
        CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, &err), FAL_RT_INVALID_ARGUMENT);
        CHECK(strstr(fal_rt_error_message(err), "max_buffering") != NULL);
        fal_rt_error_free(err);
    }
    CHECK(r.freed == 3);
    /* A valid one works end to end. */
    o.max_buffering = 5;
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    fal_rt_realtime_free(conn);
    CHECK(r.freed == 4);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_wrong_key_is_unauthorized(void) {
    fal_rt_client *client = emulator_client_with_key("wrong-key");
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.errors, 1));
    CHECK(r.last_error_kind == FAL_RT_AUTH);
    CHECK(r.last_error_status == 401 || r.last_error_status == 403);
    CHECK(strstr(r.last_error, "wrong-key") == NULL); /* never the key */
    CHECK(r.results == 0);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static int g_token_calls = 0;
static char g_token_app[128];
static int bogus_token(void *ud, const char *app, fal_rt_buffer *out) {
    (void)ud;
    g_token_calls++;
    snprintf(g_token_app, sizeof g_token_app, "%s", app);
    return fal_rt_buffer_append(out, (const uint8_t *)"bogus", 5) == FAL_RT_OK ? 0 : 1;
}
static int failing_token(void *ud, const char *app, fal_rt_buffer *out) {
    (void)ud;
    (void)app;
    (void)out;
    return 42;
}

static void test_token_provider_unauthorized(void) {
    fal_rt_client *client = emulator_client();
    recorder r, cbr;
    recorder_init(&r);
    recorder_init(&cbr);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    o.token_provider = bogus_token;
    o.callbacks_user_data = &cbr;
    o.free_callbacks_user_data = rec_free;
    fal_rt_realtime *conn = NULL;
    g_token_calls = 0;
    CHECK_RC(fal_rt_realtime_connect(client, "123-myapp", &o, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.errors, 1));
    CHECK(r.last_error_kind == FAL_RT_AUTH);
    CHECK(strcmp(g_token_app, "123/myapp/realtime") == 0);
    CHECK(g_token_calls >= 1);
    CHECK(wait_for(&r, &r.states[FAL_RT_STATE_CLOSED], 1));
    fal_rt_realtime_free(conn);
    CHECK(r.freed == 1 && cbr.freed == 1);

    /* A provider that fails: FAL_RT_TOKEN_PROVIDER, with its code in the message. */
    recorder r2;
    recorder_init(&r2);
    h = rec_handler(&r2);
    o.token_provider = failing_token;
    o.free_callbacks_user_data = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r2, &r2.errors, 1));
    CHECK(r2.last_error_kind == FAL_RT_TOKEN_PROVIDER);
    CHECK(strstr(r2.last_error, "42") != NULL);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
    recorder_destroy(&r2);
    recorder_destroy(&cbr);
}

static void test_server_error(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/fail", NULL, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.errors, 1));
    CHECK(r.last_error_kind == FAL_RT_SERVER);
    CHECK(strstr(r.last_error, "INTERNAL_ERROR") != NULL);
    CHECK(strstr(r.last_error_body, "x-fal-error") != NULL);
    CHECK(r.results == 0);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_abnormal_close_code(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/control", NULL, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"do\":\"close\",\"code\":4001}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.errors, 1));
    CHECK(r.last_error_kind == FAL_RT_CLOSED);
    CHECK(r.last_error_close_code == 4001);
    /* The next send reconnects. */
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"do\":\"echo\"}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    CHECK(wait_for(&r, &r.states[FAL_RT_STATE_OPEN], 2));
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

/* ------------------------------------------------------------------------ */
/* Re-entrancy: close and free inside callbacks                              */

static void test_close_inside_callback(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    r.close_on_result = 1;
    r.reentrant_rc = (fal_rt_result)-1;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &r.conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.states[FAL_RT_STATE_CLOSED], 1));
    CHECK(r.reentrant_rc == FAL_RT_OK);
    /* And the next send reconnects. */
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":2}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 2));
    CHECK(read_int(&r, &r.states[FAL_RT_STATE_OPEN]) == 2);
    fal_rt_realtime_free(r.conn);
    CHECK(r.freed == 1);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_free_inside_callback(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    CHECK_RC(fal_rt_realtime_connect(client, "demo/stream", &o, &h, &r.conn, NULL), FAL_RT_OK);
    r.free_on_result = 1;
    /* `stream` answers 3 outputs per input: the first result frees the connection. */
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.freed, 1)); /* the finalizer ran after the callback returned */
    CHECK(read_int(&r, &r.freed) == 1);
    CHECK(read_int(&r, &r.results) == 1);
    sleep_ms(200);
    CHECK(read_int(&r, &r.after_free_callbacks) == 0);
    CHECK(read_int(&r, &r.results) == 1);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_blocking_call_inside_callback_is_refused(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *session = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &session, NULL), FAL_RT_OK);
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &r.conn, NULL), FAL_RT_OK);
    r.session = session; /* on_result calls fal_rt_session_recv on it */
    r.reentrant_rc = (fal_rt_result)-1;
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    fal_rt_realtime_free(r.conn);
    CHECK(r.reentrant_rc == FAL_RT_WOULD_BLOCK_IN_CALLBACK);
    fal_rt_session_free(session);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

typedef struct {
    fal_rt_realtime *conn;
    int t;
    int per_thread;
    int failures;
} sender_arg;

static void *sender_thread(void *p) {
    sender_arg *a = (sender_arg *)p;
    for (int n = 0; n < a->per_thread; n++) {
        char json[64];
        snprintf(json, sizeof json, "{\"t\":%d,\"n\":%d}", a->t, n);
        if (fal_rt_realtime_send_json(a->conn, json, NULL) != FAL_RT_OK) a->failures++;
    }
    return NULL;
}

static void test_send_from_threads(void) {
    enum { THREADS = 4, PER_THREAD = 25 };
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &r.conn, NULL), FAL_RT_OK);
    /* Open the connection first (while connecting, only the latest input is kept). */
    CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"warmup\":true}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    pthread_t th[THREADS];
    sender_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].conn = r.conn;
        args[i].t = i;
        args[i].per_thread = PER_THREAD;
        args[i].failures = 0;
        pthread_create(&th[i], NULL, sender_thread, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) CHECK(args[i].failures == 0);
    CHECK(wait_for(&r, &r.results, 1 + THREADS * PER_THREAD));
    CHECK(r.order_violations == 0);
    for (int i = 0; i < THREADS; i++) CHECK(r.per_thread_last[i] == PER_THREAD - 1);
    CHECK(r.errors == 0);
    fal_rt_realtime_free(r.conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_free_while_in_flight(void) {
    fal_rt_client *client = emulator_client();
    for (int round = 0; round < 3; round++) {
        recorder r;
        recorder_init(&r);
        fal_rt_realtime_handler h = rec_handler(&r);
        fal_rt_connect_options o = no_throttle();
        CHECK_RC(fal_rt_realtime_connect(client, "demo/stream", &o, &h, &r.conn, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":0}", NULL), FAL_RT_OK);
        CHECK(wait_for(&r, &r.results, 1));
        for (int i = 1; i <= 20; i++) {
            char json[32];
            snprintf(json, sizeof json, "{\"n\":%d}", i);
            CHECK_RC(fal_rt_realtime_send_json(r.conn, json, NULL), FAL_RT_OK);
        }
        fal_rt_realtime_free(r.conn);
        /* free returned: the finalizer ran, and no callback runs any more. */
        pthread_mutex_lock(&r.mu);
        r.done = 1;
        int freed = r.freed;
        pthread_mutex_unlock(&r.mu);
        CHECK(freed == 1);
        sleep_ms(100);
        CHECK(read_int(&r, &r.after_free_callbacks) == 0);
        recorder_destroy(&r);
    }
    /* The same for a pull session with results unread, and a raw socket. */
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/stream", NULL, &s, NULL), FAL_RT_OK);
    for (int i = 0; i < 10; i++) CHECK_RC(fal_rt_session_send_json(s, "{\"n\":1}", NULL), FAL_RT_OK);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
}

/* Two handles sharing a connection_key: the latest handler gets the results. */
static void test_connection_key_reuse(void) {
    fal_rt_client *client = emulator_client();
    recorder r1, r2;
    recorder_init(&r1);
    recorder_init(&r2);
    fal_rt_realtime_handler h1 = rec_handler(&r1), h2 = rec_handler(&r2);
    fal_rt_connect_options o = no_throttle();
    o.connection_key = "shared";
    fal_rt_realtime *c1 = NULL, *c2 = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h1, &c1, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(c1, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r1, &r1.results, 1));
    /* The second connect reuses the live connection: its options are not
       used, so their finalizer runs at once. */
    recorder unused;
    recorder_init(&unused);
    o.callbacks_user_data = &unused;
    o.free_callbacks_user_data = rec_free;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h2, &c2, NULL), FAL_RT_OK);
    CHECK(unused.freed == 1);
    recorder_destroy(&unused);
    CHECK_RC(fal_rt_realtime_send_json(c2, "{\"n\":2}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r2, &r2.results, 1));
    CHECK(read_int(&r1, &r1.results) == 1);
    fal_rt_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(fal_rt_realtime_stats(c1, &s), FAL_RT_OK);
    CHECK(s.connects == 1 && s.results == 2); /* one socket for both */
    /* Freeing the first handle keeps the connection for the second. */
    fal_rt_realtime_free(c1);
    CHECK(r1.freed == 1);
    CHECK_RC(fal_rt_realtime_send_json(c2, "{\"n\":3}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r2, &r2.results, 2));
    fal_rt_realtime_free(c2);
    CHECK(r2.freed == 1);
    fal_rt_client_free(client);
    recorder_destroy(&r1);
    recorder_destroy(&r2);
}

/* ------------------------------------------------------------------------ */
/* Custom codecs and header auth                                             */

static int g_encoded = 0, g_decoded = 0;
static int pass_encoder(void *ud, const uint8_t *data, size_t len, fal_rt_buffer *out) {
    (void)ud;
    g_encoded++;
    return fal_rt_buffer_append(out, data, len) == FAL_RT_OK ? 0 : 1;
}
static int failing_encoder(void *ud, const uint8_t *data, size_t len, fal_rt_buffer *out) {
    (void)ud;
    (void)data;
    (void)len;
    (void)out;
    return 7;
}
static int pass_decoder(void *ud, const uint8_t *data, size_t len, bool is_text, fal_rt_buffer *out) {
    (void)ud;
    (void)is_text;
    g_decoded++;
    return fal_rt_buffer_append(out, data, len) == FAL_RT_OK ? 0 : 1;
}

static void test_custom_codec_and_header_auth(void) {
    fal_rt_client *client = emulator_client();
    recorder r, cbr;
    recorder_init(&r);
    recorder_init(&cbr);
    fal_rt_realtime_handler h = rec_handler(&r);
    fal_rt_connect_options o = no_throttle();
    o.encoder = pass_encoder;
    o.decoder = pass_decoder;
    o.header_auth = true;
    o.callbacks_user_data = &cbr;
    o.free_callbacks_user_data = rec_free;
    g_encoded = g_decoded = 0;
    fal_rt_realtime *conn = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"codec\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 1));
    CHECK(strcmp(r.last_json, "{\"codec\":1}") == 0);
    CHECK(g_encoded == 1 && g_decoded == 1);
    fal_rt_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_RC(fal_rt_realtime_stats(conn, &s), FAL_RT_OK);
    CHECK(s.token_fetches == 0); /* header auth: no token */
    fal_rt_realtime_free(conn);
    CHECK(r.freed == 1 && cbr.freed == 1);

    /* A failing encoder fails the send with FAL_RT_ENCODE. */
    recorder r2;
    recorder_init(&r2);
    h = rec_handler(&r2);
    o.encoder = failing_encoder;
    o.free_callbacks_user_data = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_OK);
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_realtime_send_json(conn, "{\"x\":1}", &err), FAL_RT_ENCODE);
    CHECK(strstr(fal_rt_error_message(err), "7") != NULL);
    fal_rt_error_free(err);
    fal_rt_realtime_free(conn);
    fal_rt_client_free(client);
    recorder_destroy(&r);
    recorder_destroy(&r2);
    recorder_destroy(&cbr);
}

/* ------------------------------------------------------------------------ */
/* Pull sessions                                                             */

static void test_session_pull(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    fal_rt_message *m = (fal_rt_message *)0x1;
    /* Nothing sent: the poll times out without touching out params. */
    CHECK_RC(fal_rt_session_recv(s, 50, &m, NULL), FAL_RT_TIMEOUT_EXPIRED);
    CHECK(m == (fal_rt_message *)0x1);
    CHECK_RC(fal_rt_session_send_json(s, "{\"request_id\":\"abc\",\"v\":1.5}", NULL), FAL_RT_OK);
    const uint8_t mp[] = {0x81, 0xa1, 'b', 0xc3}; /* {"b": true} */
    CHECK_RC(fal_rt_session_send(s, mp, sizeof mp, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_OK);
    char *json = NULL;
    CHECK_RC(fal_rt_message_to_json(m, &json, NULL, NULL), FAL_RT_OK);
    CHECK(strcmp(json, "{\"request_id\":\"abc\",\"v\":1.5}") == 0);
    size_t id_len = 0;
    const char *id = fal_rt_message_request_id(m, &id_len);
    CHECK(id != NULL && id_len == 3 && memcmp(id, "abc", 3) == 0);
    fal_rt_string_free(json);
    fal_rt_message_free(m);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_OK);
    size_t len = 0;
    const uint8_t *data = fal_rt_message_data(m, &len);
    CHECK(len == sizeof mp && memcmp(data, mp, len) == 0);
    CHECK(fal_rt_message_request_id(m, &id_len) == NULL);
    fal_rt_message_free(m);
    fal_rt_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(fal_rt_session_stats(s, &st), FAL_RT_OK);
    CHECK(st.frames_sent == 2 && st.results == 2);
    CHECK_RC(fal_rt_session_close(s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_END);
    fal_rt_session_free(s);

    /* A server error arrives through recv; then the session ends. */
    CHECK_RC(fal_rt_session_connect(client, "demo/fail", NULL, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_send_json(s, "{\"x\":1}", NULL), FAL_RT_OK);
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, &err), FAL_RT_SERVER);
    CHECK(strstr(fal_rt_error_message(err), "INTERNAL_ERROR") != NULL);
    fal_rt_error_free(err);
    err = NULL;
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, &err), FAL_RT_END);
    CHECK(err == NULL);
    fal_rt_session_free(s);

    /* Connect errors are returned by connect. */
    fal_rt_connect_options o = no_throttle();
    o.max_buffering = 99;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", &o, &s, &err), FAL_RT_INVALID_ARGUMENT);
    fal_rt_error_free(err);
    err = NULL;
    fal_rt_client *bad = emulator_client_with_key("wrong-key");
    CHECK_RC(fal_rt_session_connect(bad, "demo/echo", NULL, &s, &err), FAL_RT_AUTH);
    CHECK(fal_rt_error_status(err) == 401 || fal_rt_error_status(err) == 403);
    fal_rt_error_free(err);
    fal_rt_client_free(bad);
    fal_rt_client_free(client);
}

typedef struct {
    fal_rt_session *s;
    int got;
} recv_arg;

static void *receiver_thread(void *p) {
    recv_arg *a = (recv_arg *)p;
    for (;;) {
        fal_rt_message *m = NULL;
        fal_rt_result rc = fal_rt_session_recv(a->s, WAIT_MS, &m, NULL);
        if (rc != FAL_RT_OK) break;
        __atomic_fetch_add(&a->got, 1, __ATOMIC_RELEASE);
        fal_rt_message_free(m);
    }
    return NULL;
}

/* One thread blocks in recv while two others send. */
static void test_session_threads(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    recv_arg ra = {s, 0};
    pthread_t rt;
    pthread_create(&rt, NULL, receiver_thread, &ra);
    for (int i = 0; i < 20; i++) CHECK_RC(fal_rt_session_send_json(s, "{\"n\":1}", NULL), FAL_RT_OK);
    for (int tries = 0; tries < WAIT_MS / 10 && __atomic_load_n(&ra.got, __ATOMIC_ACQUIRE) < 20; tries++) sleep_ms(10);
    CHECK_RC(fal_rt_session_close(s, NULL), FAL_RT_OK); /* wakes the receiver with FAL_RT_END */
    pthread_join(rt, NULL);
    CHECK(ra.got == 20);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
}

/* Sends that cannot be written at once (the server paused, the socket
 * buffers full) wait and are all delivered: a send's first try is a poll
 * without block_on, and when it is pending the same send goes on in
 * block_on. The server reads nothing for 300 ms while 48 inputs of 1 MiB go
 * out, more than loopback buffers hold (Linux's defaults: 4 MiB to send, 6
 * MiB to receive); a receiver thread drains the results. How long the sends
 * waited is printed, not checked (it depends on the buffer sizes). */
#define BIG_N 48
#define BIG_LEN (1024 * 1024)
static uint8_t *big_input(size_t *len) {
    /* {"data": <bin32 of BIG_LEN bytes>} */
    const uint8_t head[] = {0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6,
                            (BIG_LEN >> 24) & 0xff, (BIG_LEN >> 16) & 0xff, (BIG_LEN >> 8) & 0xff, BIG_LEN & 0xff};
    uint8_t *buf = malloc(sizeof head + BIG_LEN);
    if (!buf) return NULL;
    memcpy(buf, head, sizeof head);
    memset(buf + sizeof head, 0x5a, BIG_LEN);
    *len = sizeof head + BIG_LEN;
    return buf;
}

static const uint8_t pause_cmd[] = {0x82, 0xa2, 'd', 'o', 0xa5, 'p', 'a', 'u', 's', 'e', 0xa2, 'm', 's', 0xcd, 0x01, 0x2c}; /* 300 ms */

typedef struct {
    fal_rt_ws *ws;
    int got;
} ws_recv_arg;

static void *ws_receiver_thread(void *p) {
    ws_recv_arg *a = (ws_recv_arg *)p;
    while (__atomic_load_n(&a->got, __ATOMIC_ACQUIRE) < BIG_N + 1) {
        fal_rt_frame *f = NULL;
        if (fal_rt_ws_recv(a->ws, WAIT_MS, &f, NULL) != FAL_RT_OK) break;
        __atomic_fetch_add(&a->got, 1, __ATOMIC_RELEASE);
        fal_rt_frame_free(f);
    }
    return NULL;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void test_sends_wait_for_the_socket(void) {
    fal_rt_client *client = emulator_client();
    size_t len = 0;
    uint8_t *input = big_input(&len);
    CHECK(input != NULL);
    if (!input) return;
    /* The session. Every check comes after the receiver was joined. */
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/control", NULL, &s, NULL), FAL_RT_OK);
    recv_arg ra = {s, 0};
    pthread_t rt;
    CHECK(pthread_create(&rt, NULL, receiver_thread, &ra) == 0);
    fal_rt_result first = fal_rt_session_send(s, pause_cmd, sizeof pause_cmd, NULL), rc = FAL_RT_OK;
    double t0 = now_ms();
    for (int i = 0; i < BIG_N && rc == FAL_RT_OK; i++) rc = fal_rt_session_send(s, input, len, NULL);
    double waited = now_ms() - t0;
    for (int tries = 0; tries < WAIT_MS / 10 && __atomic_load_n(&ra.got, __ATOMIC_ACQUIRE) < BIG_N + 1; tries++)
        sleep_ms(10);
    fal_rt_result closed = fal_rt_session_close(s, NULL); /* wakes the receiver with FAL_RT_END */
    pthread_join(rt, NULL);
    printf("# session: %d MiB of sends took %.0f ms\n", BIG_N, waited);
    CHECK_RC(first, FAL_RT_OK);
    CHECK_RC(rc, FAL_RT_OK);
    CHECK_RC(closed, FAL_RT_OK);
    CHECK(ra.got == BIG_N + 1);
    fal_rt_session_free(s);
    /* A pull socket on the same endpoint. */
    fal_rt_ws *ws = NULL;
    fal_rt_connect_options o = no_throttle();
    o.path = "/realtime";
    rc = fal_rt_ws_connect(client, "demo/control", &o, NULL, &ws, NULL);
    CHECK_RC(rc, FAL_RT_OK);
    if (rc == FAL_RT_OK) {
        ws_recv_arg wa = {ws, 0};
        CHECK(pthread_create(&rt, NULL, ws_receiver_thread, &wa) == 0);
        first = fal_rt_ws_send_binary(ws, pause_cmd, sizeof pause_cmd, NULL);
        t0 = now_ms();
        for (int i = 0; i < BIG_N && rc == FAL_RT_OK; i++) rc = fal_rt_ws_send_binary(ws, input, len, NULL);
        waited = now_ms() - t0;
        if (first != FAL_RT_OK || rc != FAL_RT_OK) fal_rt_ws_close(ws, NULL); /* ends the receiver */
        pthread_join(rt, NULL);
        printf("# ws: %d MiB of sends took %.0f ms\n", BIG_N, waited);
        CHECK_RC(first, FAL_RT_OK);
        CHECK_RC(rc, FAL_RT_OK);
        CHECK(wa.got == BIG_N + 1);
        fal_rt_ws_free(ws);
    }
    free(input);
    fal_rt_client_free(client);
}

/* ------------------------------------------------------------------------ */
/* Raw WebSockets                                                            */

static void ws_on_message(void *ud, const uint8_t *data, size_t len, bool is_text) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    if (r->done) r->after_free_callbacks++;
    r->results++;
    r->last_is_text = is_text;
    r->last_len = len < sizeof r->last_bytes ? len : sizeof r->last_bytes;
    memcpy(r->last_bytes, data, r->last_len);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->reply_on_message) {
        r->reply_on_message = 0;
        r->reentrant_rc = fal_rt_ws_send_text(r->ws, "reply from callback", NULL);
    }
}

static void ws_on_close(void *ud, uint16_t code) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->closes++;
    r->last_close_code = code;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void test_ws_callbacks(void) {
    fal_rt_client *client = emulator_client();
    recorder r;
    recorder_init(&r);
    fal_rt_ws_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.on_message = ws_on_message;
    h.on_error = rec_on_error;
    h.on_close = ws_on_close;
    h.free_user_data = rec_free;
    r.reply_on_message = 1;
    r.reentrant_rc = (fal_rt_result)-1;
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", NULL, &h, &r.ws, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_send_text(r.ws, "hello", NULL), FAL_RT_OK);
    /* The echo, then the echo of the reply sent from inside the callback. */
    CHECK(wait_for(&r, &r.results, 2));
    CHECK(r.reentrant_rc == FAL_RT_OK);
    pthread_mutex_lock(&r.mu);
    int text_ok = r.last_is_text && r.last_len == 19 && memcmp(r.last_bytes, "reply from callback", 19) == 0;
    pthread_mutex_unlock(&r.mu);
    CHECK(text_ok);
    const uint8_t mp[] = {0x81, 0xa1, 'a', 0x02};
    CHECK_RC(fal_rt_ws_send_binary(r.ws, mp, sizeof mp, NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.results, 3));
    pthread_mutex_lock(&r.mu);
    int bin_ok = !r.last_is_text && r.last_len == sizeof mp && memcmp(r.last_bytes, mp, sizeof mp) == 0;
    pthread_mutex_unlock(&r.mu);
    CHECK(bin_ok);
    fal_rt_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(fal_rt_ws_stats(r.ws, &st), FAL_RT_OK);
    CHECK(st.frames_sent == 3 && st.frames_received == 3);
    fal_rt_frame *f = NULL;
    CHECK_RC(fal_rt_ws_recv(r.ws, 0, &f, NULL), FAL_RT_WRONG_MODE);
    CHECK_RC(fal_rt_ws_close(r.ws, NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.closes, 1));
    CHECK(r.last_close_code == 1000 && r.errors == 0);
    fal_rt_ws_free(r.ws);
    CHECK(r.freed == 1);
    fal_rt_client_free(client);
    recorder_destroy(&r);
}

static void test_ws_pull(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_ws *ws = NULL;
    fal_rt_connect_options o = no_throttle();
    o.path = "/raw";
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &o, NULL, &ws, NULL), FAL_RT_OK);
    fal_rt_frame *f = NULL;
    CHECK_RC(fal_rt_ws_recv(ws, 20, &f, NULL), FAL_RT_TIMEOUT_EXPIRED);
    CHECK(f == NULL);
    CHECK_RC(fal_rt_ws_send_text(ws, "ping", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_OK);
    size_t len = 0;
    const uint8_t *data = fal_rt_frame_data(f, &len);
    CHECK(fal_rt_frame_is_text(f) && len == 4 && memcmp(data, "ping", 4) == 0);
    fal_rt_frame_free(f);
    /* An abnormal close reaches recv as FAL_RT_CLOSED with its code. */
    fal_rt_ws *ctl = NULL;
    CHECK_RC(fal_rt_ws_connect(client, "demo/control", NULL, NULL, &ctl, NULL), FAL_RT_CONNECT);
    o.path = "/realtime";
    CHECK_RC(fal_rt_ws_connect(client, "demo/control", &o, NULL, &ctl, NULL), FAL_RT_OK);
    const uint8_t close_cmd[] = {0x82, 0xa2, 'd', 'o', 0xa5, 'c', 'l', 'o', 's', 'e', 0xa4, 'c', 'o', 'd', 'e', 0xcd, 0x0f, 0xa2};
    CHECK_RC(fal_rt_ws_send_binary(ctl, close_cmd, sizeof close_cmd, NULL), FAL_RT_OK);
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_ws_recv(ctl, WAIT_MS, &f, &err), FAL_RT_CLOSED);
    CHECK(fal_rt_error_close_code(err) == 4002);
    fal_rt_error_free(err);
    fal_rt_ws_free(ctl);
    CHECK_RC(fal_rt_ws_close(ws, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_END);
    fal_rt_ws_free(ws);
    fal_rt_client_free(client);
}

/* ------------------------------------------------------------------------ */
/* Memory safety and end-of-session rules (issue: field reliability)         */

typedef struct {
    recorder r;
    fal_rt_result send_rc, close_rc, state_rc, stats_rc;
    int ran;
} free_use;

static void free_then_use_on_result(void *ud, const fal_rt_message *m) {
    (void)m;
    free_use *fu = (free_use *)ud;
    if (fu->ran++) return;
    fal_rt_realtime *c = fu->r.conn;
    fal_rt_realtime_free(c); /* inside its own callback: deferred */
    fal_rt_realtime_free(c); /* a second free inside the callback is ignored */
    const uint8_t mp[] = {0x81, 0xa1, 'a', 0x01};
    fu->send_rc = fal_rt_realtime_send(c, mp, sizeof mp, NULL);
    fu->close_rc = fal_rt_realtime_close(c);
    fal_rt_state st;
    fu->state_rc = fal_rt_realtime_state(c, &st);
    fal_rt_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    fu->stats_rc = fal_rt_realtime_stats(c, &stats);
}

static void test_free_then_use_inside_callback(void) {
    fal_rt_client *client = emulator_client();
    free_use fu;
    memset(&fu, 0, sizeof fu);
    recorder_init(&fu.r);
    fal_rt_realtime_handler h = rec_handler(&fu.r);
    h.user_data = &fu;
    h.on_result = free_then_use_on_result;
    h.on_state = NULL;
    h.on_error = NULL;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/stream", NULL, &h, &fu.r.conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send_json(fu.r.conn, "{\"n\":1}", NULL), FAL_RT_OK);
    CHECK(wait_for(&fu.r, &fu.r.freed, 1));
    CHECK(fu.send_rc == FAL_RT_NOT_CONNECTED);
    CHECK(fu.close_rc == FAL_RT_NOT_CONNECTED);
    CHECK(fu.state_rc == FAL_RT_NOT_CONNECTED);
    CHECK(fu.stats_rc == FAL_RT_NOT_CONNECTED);
    CHECK(read_int(&fu.r, &fu.r.freed) == 1);
    fal_rt_client_free(client);
    recorder_destroy(&fu.r);
}

typedef struct {
    recorder r;
    fal_rt_result send_rc, close_rc, session_rc;
    fal_rt_session *session;
    int ran;
} ws_free_use;

static void ws_free_then_use(void *ud, const uint8_t *data, size_t len, bool is_text) {
    (void)data, (void)len, (void)is_text;
    ws_free_use *fu = (ws_free_use *)ud;
    if (fu->ran++) return;
    fal_rt_ws *w = fu->r.ws;
    fal_rt_ws_free(w);
    fu->send_rc = fal_rt_ws_send_text(w, "after free", NULL);
    fu->close_rc = fal_rt_ws_close(w, NULL);
    /* A session freed inside this callback is dead too, not freed memory. */
    fal_rt_session_free(fu->session);
    fu->session_rc = fal_rt_session_send_json(fu->session, "{\"a\":1}", NULL);
}

static void test_ws_and_session_free_then_use_inside_callback(void) {
    fal_rt_client *client = emulator_client();
    ws_free_use fu;
    memset(&fu, 0, sizeof fu);
    recorder_init(&fu.r);
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &fu.session, NULL), FAL_RT_OK);
    fal_rt_ws_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &fu;
    h.on_message = ws_free_then_use;
    h.free_user_data = rec_free;
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", NULL, &h, &fu.r.ws, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_send_text(fu.r.ws, "hello", NULL), FAL_RT_OK);
    CHECK(wait_for(&fu.r, &fu.r.freed, 1));
    CHECK(fu.send_rc == FAL_RT_NOT_CONNECTED);
    CHECK(fu.close_rc == FAL_RT_NOT_CONNECTED);
    CHECK(fu.session_rc == FAL_RT_NOT_CONNECTED);
    fal_rt_client_free(client);
    recorder_destroy(&fu.r);
}

/* After the session ended, every send fails with FAL_RT_CLOSED saying why. */
static void test_session_send_after_end_fails(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    fal_rt_message *m = NULL;
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/control", NULL, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_send_json(s, "{\"do\":\"unauthorized\"}", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, &err), FAL_RT_AUTH);
    CHECK(strstr(fal_rt_error_message(err), "next send") == NULL);
    fal_rt_error_free(err);
    err = NULL;
    CHECK_RC(fal_rt_session_send_json(s, "{\"n\":1}", &err), FAL_RT_CLOSED);
    CHECK(strstr(fal_rt_error_message(err), "Unauthorized") != NULL);
    fal_rt_error_free(err);
    err = NULL;
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_END);
    fal_rt_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(fal_rt_session_stats(s, &st), FAL_RT_OK);
    CHECK(st.frames_sent == 1);
    fal_rt_session_free(s);

    /* A normal close by the server: FAL_RT_END, then sends fail. */
    CHECK_RC(fal_rt_session_connect(client, "demo/control", NULL, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_send_json(s, "{\"do\":\"close\",\"code\":1000}", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_END);
    CHECK_RC(fal_rt_session_send_json(s, "{\"n\":1}", &err), FAL_RT_CLOSED);
    CHECK(strstr(fal_rt_error_message(err), "1000") != NULL);
    fal_rt_error_free(err);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
}

static void test_argument_checks(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    fal_rt_message *m = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, -2, &m, NULL), FAL_RT_INVALID_ARGUMENT);
    const uint8_t bad[] = {0x92, 0x01}; /* an array of 2 with 1 element */
    CHECK_RC(fal_rt_session_send(s, bad, sizeof bad, NULL), FAL_RT_ENCODE);
    CHECK_RC(fal_rt_session_send(s, NULL, 0, NULL), FAL_RT_ENCODE);
    fal_rt_session_free(s);
    recorder r;
    recorder_init(&r);
    fal_rt_realtime_handler h = rec_handler(&r);
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", NULL, &h, &r.conn, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_realtime_send(r.conn, bad, sizeof bad, NULL), FAL_RT_ENCODE);
    const uint8_t empty[1] = {0};
    CHECK_RC(fal_rt_realtime_send(r.conn, empty, 0, NULL), FAL_RT_ENCODE);
    fal_rt_realtime_free(r.conn);
    recorder_destroy(&r);
    /* A token life under 1 s would refresh in a storm: refused. */
    fal_rt_connect_options o = no_throttle();
    o.token_expiration_ms = 1;
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", &o, &s, &err), FAL_RT_INVALID_ARGUMENT);
    CHECK(strstr(fal_rt_error_message(err), "at least 1 s") != NULL);
    fal_rt_error_free(err);
    fal_rt_client_free(client);
}

/* Keepalive pings go out while recv waits, and pongs come back. */
static void test_keepalive_pings(void) {
    fal_rt_client_options co = emulator_client_options(NULL);
    co.ping_interval_ms = 50;
    co.ping_timeout_ms = 5000;
    fal_rt_client *client = NULL;
    CHECK_RC(fal_rt_client_new(&co, &client, NULL), FAL_RT_OK);
    fal_rt_session *s = NULL;
    fal_rt_message *m = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    fal_rt_stats st;
    for (int i = 0; i < 200; i++) {
        CHECK_RC(fal_rt_session_recv(s, 20, &m, NULL), FAL_RT_TIMEOUT_EXPIRED);
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK_RC(fal_rt_session_stats(s, &st), FAL_RT_OK);
        if (st.pongs_received >= 2) break;
    }
    CHECK(st.pings_sent >= 2 && st.pongs_received >= 2);
    /* An old caller's smaller stats struct gets only the fields it knows. */
    fal_rt_stats old;
    memset(&old, 0xab, sizeof old);
    old.struct_size = (uint32_t)offsetof(fal_rt_stats, pings_sent);
    CHECK_RC(fal_rt_session_stats(s, &old), FAL_RT_OK);
    CHECK(old.struct_size == offsetof(fal_rt_stats, pings_sent));
    CHECK(old.pings_sent == 0xababababababababULL);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
}

/* ------------------------------------------------------------------------ */
/* The fault matrix, C doors (FAL_RT_MATRIX=path appends a JSON line per cell) */

typedef struct {
    const char *name, *input;
    fal_rt_result kind;
    uint16_t code;
    const uint8_t *mp; /* the input as msgpack, for the raw socket */
    size_t mp_len;
} fault_case;

static const uint8_t MP0[] = {0x81, 0xa2, 0x64, 0x6f, 0xa6, 0x73, 0x69, 0x6c, 0x65, 0x6e, 0x74};
static const uint8_t MP1[] = {0x81, 0xa2, 0x64, 0x6f, 0xa5, 0x72, 0x65, 0x73, 0x65, 0x74};
static const uint8_t MP2[] = {0x81, 0xa2, 0x64, 0x6f, 0xa3, 0x63, 0x75, 0x74};
static const uint8_t MP3[] = {0x82, 0xa2, 0x64, 0x6f, 0xa9, 0x6f, 0x76, 0x65, 0x72, 0x73, 0x69, 0x7a, 0x65, 0x64, 0xa4, 0x73, 0x69, 0x7a, 0x65, 0xce, 0x00, 0x20, 0x00, 0x00};
static const uint8_t MP4[] = {0x82, 0xa2, 0x64, 0x6f, 0xa5, 0x63, 0x6c, 0x6f, 0x73, 0x65, 0xa4, 0x63, 0x6f, 0x64, 0x65, 0xcd, 0x0f, 0xa1};

static const fault_case FAULTS[] = {
    {"server stops answering", "{\"do\":\"silent\"}", FAL_RT_TIMEOUT, 1011, MP0, sizeof MP0},
    {"connection reset", "{\"do\":\"reset\"}", FAL_RT_CLOSED, 1006, MP1, sizeof MP1},
    {"cut mid-frame", "{\"do\":\"cut\"}", FAL_RT_CLOSED, 1006, MP2, sizeof MP2},
    {"oversized frame", "{\"do\":\"oversized\",\"size\":2097152}", FAL_RT_CLOSED, 1009, MP3, sizeof MP3},
    {"abnormal close 4001", "{\"do\":\"close\",\"code\":4001}", FAL_RT_CLOSED, 4001, MP4, sizeof MP4},
};

static void matrix_record(const char *door, const char *fault, fal_rt_result kind, uint16_t code, const char *extra) {
    const char *path = getenv("FAL_RT_MATRIX");
    if (path == NULL || path[0] == '\0') return;
    FILE *f = fopen(path, "a");
    if (f == NULL) return;
    if (kind == FAL_RT_OK)
        fprintf(f, "{\"door\":\"%s\",\"fault\":\"%s\",\"outcome\":\"no error, result delivered\"}\n", door, fault);
    else if (code == 0)
        fprintf(f, "{\"door\":\"%s\",\"fault\":\"%s\",\"outcome\":\"%s%s\"}\n", door, fault,
                fal_rt_result_name(kind), extra);
    else
        fprintf(f, "{\"door\":\"%s\",\"fault\":\"%s\",\"outcome\":\"%s (%u)%s\"}\n", door, fault,
                fal_rt_result_name(kind), (unsigned)code, extra);
    fclose(f);
}

static fal_rt_client *fault_client(void) {
    fal_rt_client_options co = emulator_client_options(NULL);
    co.ping_interval_ms = 200;
    co.ping_timeout_ms = 400;
    co.max_frame_size = 1 << 20;
    fal_rt_client *c = NULL;
    if (fal_rt_client_new(&co, &c, NULL) != FAL_RT_OK) exit(2);
    return c;
}

static void test_fault_matrix(void) {
    fal_rt_client *client = fault_client();
    for (size_t i = 0; i < sizeof FAULTS / sizeof FAULTS[0]; i++) {
        const fault_case *fc = &FAULTS[i];
        /* Session. */
        fal_rt_session *s = NULL;
        fal_rt_message *m = NULL;
        fal_rt_error *err = NULL;
        CHECK_RC(fal_rt_session_connect(client, "demo/control", NULL, &s, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_session_send_json(s, fc->input, NULL), FAL_RT_OK);
        fal_rt_result rc = fal_rt_session_recv(s, WAIT_MS, &m, &err);
        uint16_t code = fal_rt_error_close_code(err);
        fal_rt_error_free(err);
        matrix_record("C session", fc->name, rc, code, "");
        CHECK(rc == fc->kind && code == fc->code);
        CHECK_RC(fal_rt_session_send_json(s, "{\"n\":1}", NULL), FAL_RT_CLOSED);
        fal_rt_session_free(s);
        /* Raw socket, pull mode. */
        fal_rt_ws *w = NULL;
        fal_rt_frame *f = NULL;
        fal_rt_connect_options o = no_throttle();
        o.path = "/realtime";
        err = NULL;
        CHECK_RC(fal_rt_ws_connect(client, "demo/control", &o, NULL, &w, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_ws_send_binary(w, fc->mp, fc->mp_len, NULL), FAL_RT_OK);
        rc = fal_rt_ws_recv(w, WAIT_MS, &f, &err);
        code = fal_rt_error_close_code(err);
        fal_rt_error_free(err);
        matrix_record("C ws", fc->name, rc, code, "");
        CHECK(rc == fc->kind && code == fc->code);
        CHECK_RC(fal_rt_ws_send_text(w, "x", NULL), FAL_RT_CLOSED);
        CHECK_RC(fal_rt_ws_recv(w, 0, &f, NULL), FAL_RT_END);
        fal_rt_ws_free(w);
        /* Callback: on_error with the kind and code, then the next send recovers. */
        recorder r;
        recorder_init(&r);
        fal_rt_realtime_handler h = rec_handler(&r);
        fal_rt_connect_options ro = no_throttle();
        CHECK_RC(fal_rt_realtime_connect(client, "demo/control", &ro, &h, &r.conn, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_realtime_send_json(r.conn, fc->input, NULL), FAL_RT_OK);
        CHECK(wait_for(&r, &r.errors, 1));
        pthread_mutex_lock(&r.mu);
        fal_rt_result kind = r.last_error_kind;
        uint16_t ccode = r.last_error_close_code;
        pthread_mutex_unlock(&r.mu);
        CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":2}", NULL), FAL_RT_OK);
        CHECK(wait_for(&r, &r.results, 1));
        matrix_record("C callback", fc->name, kind, ccode, ", recovers");
        CHECK(kind == fc->kind && ccode == fc->code);
        fal_rt_realtime_free(r.conn);
        recorder_destroy(&r);
    }
    /* Pongs that come late but within the timeout are not an error. */
    {
        fal_rt_session *s = NULL;
        fal_rt_message *m = NULL;
        fal_rt_client_options co = emulator_client_options(NULL);
        co.ping_interval_ms = 200;
        co.ping_timeout_ms = 3000;
        fal_rt_client *patient = NULL;
        CHECK_RC(fal_rt_client_new(&co, &patient, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_session_connect(patient, "demo/control", NULL, &s, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_session_send_json(s, "{\"do\":\"pause\",\"ms\":700}", NULL), FAL_RT_OK);
        fal_rt_result rc = fal_rt_session_recv(s, WAIT_MS, &m, NULL);
        fal_rt_message_free(m);
        matrix_record("C session", "pongs late (within the timeout)", rc, 0, "");
        CHECK(rc == FAL_RT_OK);
        fal_rt_session_free(s);
        fal_rt_client_free(patient);
    }
    /* A handshake that is never answered: the open timeout, in every style. */
    {
        fal_rt_client_options co = emulator_client_options(NULL);
        co.open_timeout_ms = 1000;
        fal_rt_client *impatient = NULL;
        CHECK_RC(fal_rt_client_new(&co, &impatient, NULL), FAL_RT_OK);
        fal_rt_session *s = NULL;
        fal_rt_result rc = fal_rt_session_connect(impatient, "demo/stall", NULL, &s, NULL);
        matrix_record("C session", "handshake stalls", rc, 0, "");
        CHECK(rc == FAL_RT_TIMEOUT);
        fal_rt_ws *w = NULL;
        fal_rt_connect_options o = no_throttle();
        o.path = "/realtime";
        rc = fal_rt_ws_connect(impatient, "demo/stall", &o, NULL, &w, NULL);
        matrix_record("C ws", "handshake stalls", rc, 0, "");
        CHECK(rc == FAL_RT_TIMEOUT);
        recorder r;
        recorder_init(&r);
        fal_rt_realtime_handler h = rec_handler(&r);
        CHECK_RC(fal_rt_realtime_connect(impatient, "demo/stall", &o, &h, &r.conn, NULL), FAL_RT_OK);
        CHECK_RC(fal_rt_realtime_send_json(r.conn, "{\"n\":1}", NULL), FAL_RT_OK);
        CHECK(wait_for(&r, &r.errors, 1));
        matrix_record("C callback", "handshake stalls", r.last_error_kind, 0, "");
        CHECK(r.last_error_kind == FAL_RT_TIMEOUT);
        fal_rt_realtime_free(r.conn);
        recorder_destroy(&r);
        fal_rt_client_free(impatient);
    }
    fal_rt_client_free(client);
}

/* Each struct the connect can read is owned (its finalizer runs on failure);
 * one it cannot read (struct_size 0) is not. */
static void test_finalizers_on_failed_connect(void) {
    fal_rt_client *client = emulator_client();
    recorder hr, orr;
    recorder_init(&hr);
    recorder_init(&orr);
    fal_rt_realtime_handler h = rec_handler(&hr);
    fal_rt_connect_options o = no_throttle();
    o.callbacks_user_data = &orr;
    o.free_callbacks_user_data = rec_free;
    fal_rt_realtime *conn = NULL;
    h.struct_size = 0;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_BAD_STRUCT_SIZE);
    CHECK(hr.freed == 0 && orr.freed == 1);
    h.struct_size = sizeof h;
    o.struct_size = 0;
    CHECK_RC(fal_rt_realtime_connect(client, "demo/echo", &o, &h, &conn, NULL), FAL_RT_BAD_STRUCT_SIZE);
    CHECK(hr.freed == 1 && orr.freed == 1);
    o.struct_size = sizeof o;
    CHECK_RC(fal_rt_realtime_connect(client, "bad id", &o, &h, &conn, NULL), FAL_RT_INVALID_ARGUMENT);
    CHECK(hr.freed == 2 && orr.freed == 2);
    fal_rt_ws_handler wh;
    memset(&wh, 0, sizeof wh);
    wh.user_data = &hr;
    wh.free_user_data = rec_free;
    fal_rt_ws *ws = NULL;
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &o, &wh, &ws, NULL), FAL_RT_BAD_STRUCT_SIZE);
    CHECK(hr.freed == 2 && orr.freed == 3);
    fal_rt_client_free(client);
    recorder_destroy(&hr);
    recorder_destroy(&orr);
}

/* ------------------------------------------------------------------------ */
/* Interrupts, cancel tokens, close codes (issue 11: hosts need them)        */

typedef struct {
    fal_rt_session *s;
    fal_rt_ws *ws;
    fal_rt_cancel_token *tok;
    int delay_ms;
    fal_rt_result rc;
} poke_arg;

static void *poke_thread(void *p) {
    poke_arg *a = (poke_arg *)p;
    sleep_ms(a->delay_ms);
    if (a->s) a->rc = fal_rt_session_interrupt(a->s);
    if (a->ws) a->rc = fal_rt_ws_interrupt(a->ws);
    if (a->tok) a->rc = fal_rt_cancel_token_cancel(a->tok);
    return NULL;
}

static void test_session_interrupt(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_interrupt(NULL), FAL_RT_NULL_ARGUMENT);
    /* Before a recv: the next one returns at once; one interrupt is kept. */
    CHECK_RC(fal_rt_session_interrupt(s), FAL_RT_OK);
    CHECK_RC(fal_rt_session_interrupt(s), FAL_RT_OK);
    fal_rt_message *m = (fal_rt_message *)0x1;
    fal_rt_error *err = NULL;
    CHECK_RC(fal_rt_session_recv(s, FAL_RT_WAIT_FOREVER, &m, &err), FAL_RT_INTERRUPTED);
    CHECK(m == (fal_rt_message *)0x1 && err == NULL);
    CHECK_RC(fal_rt_session_recv(s, 20, &m, NULL), FAL_RT_TIMEOUT_EXPIRED);
    /* From another thread while recv waits forever. */
    poke_arg a = {s, NULL, NULL, 100, FAL_RT_PANIC};
    pthread_t t;
    pthread_create(&t, NULL, poke_thread, &a);
    fal_rt_result rc = fal_rt_session_recv(s, FAL_RT_WAIT_FOREVER, &m, &err);
    pthread_join(t, NULL);
    CHECK_RC(rc, FAL_RT_INTERRUPTED);
    CHECK_RC(a.rc, FAL_RT_OK);
    CHECK(err == NULL);
    /* The session goes on. */
    CHECK_RC(fal_rt_session_send_json(s, "{\"n\":7}", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_session_recv(s, WAIT_MS, &m, NULL), FAL_RT_OK);
    fal_rt_message_free(m);
    CHECK(strcmp(fal_rt_result_name(FAL_RT_INTERRUPTED), "interrupted") == 0);
    fal_rt_session_free(s);
    fal_rt_client_free(client);
}

static void test_ws_interrupt_and_close_with(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_ws *ws = NULL;
    fal_rt_connect_options o = no_throttle();
    o.path = "/raw";
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &o, NULL, &ws, NULL), FAL_RT_OK);
    uint16_t code = 1;
    char *reason = (char *)0x1;
    CHECK_RC(fal_rt_ws_close_code(ws, &code), FAL_RT_OK);
    CHECK(code == 0); /* not ended yet */
    CHECK_RC(fal_rt_ws_close_reason(ws, &reason), FAL_RT_OK);
    CHECK(reason == NULL);
    CHECK_RC(fal_rt_ws_close_code(ws, NULL), FAL_RT_NULL_ARGUMENT);
    poke_arg a = {NULL, ws, NULL, 100, FAL_RT_PANIC};
    pthread_t t;
    pthread_create(&t, NULL, poke_thread, &a);
    fal_rt_frame *f = NULL;
    fal_rt_error *err = NULL;
    fal_rt_result rc = fal_rt_ws_recv(ws, FAL_RT_WAIT_FOREVER, &f, &err);
    pthread_join(t, NULL);
    CHECK_RC(rc, FAL_RT_INTERRUPTED);
    CHECK(f == NULL && err == NULL);
    CHECK_RC(fal_rt_ws_send_text(ws, "still here", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_OK);
    fal_rt_frame_free(f);
    /* A pending interrupt wins over a frame that is there already (recv's
       no-wait first try skips it), and the frame is kept for the next recv. */
    CHECK_RC(fal_rt_ws_send_text(ws, "one", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_send_text(ws, "two", NULL), FAL_RT_OK);
    /* Both echoes arrive before the first read, which then takes both
       frames off the socket: "two" is buffered when the interrupt comes. */
    sleep_ms(100);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_OK);
    size_t flen = 0;
    const uint8_t *fdata = fal_rt_frame_data(f, &flen);
    CHECK(flen == 3 && memcmp(fdata, "one", 3) == 0);
    fal_rt_frame_free(f);
    CHECK_RC(fal_rt_ws_interrupt(ws), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_INTERRUPTED);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_OK);
    fdata = fal_rt_frame_data(f, &flen);
    CHECK(flen == 3 && memcmp(fdata, "two", 3) == 0);
    fal_rt_frame_free(f);
    /* Close codes and reasons are checked before anything is sent. */
    CHECK_RC(fal_rt_ws_close_with(ws, 1005, NULL, 0, &err), FAL_RT_INVALID_ARGUMENT);
    fal_rt_error_free(err);
    err = NULL;
    CHECK_RC(fal_rt_ws_close_with(ws, 2999, NULL, 0, NULL), FAL_RT_INVALID_ARGUMENT);
    CHECK_RC(fal_rt_ws_close_with(ws, 5000, NULL, 0, NULL), FAL_RT_INVALID_ARGUMENT);
    char longr[124];
    memset(longr, 'x', sizeof longr);
    CHECK_RC(fal_rt_ws_close_with(ws, 4000, (const uint8_t *)longr, sizeof longr, NULL), FAL_RT_INVALID_ARGUMENT);
    const uint8_t bad_utf8[] = {0xff, 0xfe};
    CHECK_RC(fal_rt_ws_close_with(ws, 4000, bad_utf8, sizeof bad_utf8, NULL), FAL_RT_INVALID_UTF8);
    CHECK_RC(fal_rt_ws_close_with(ws, 4000, NULL, 3, NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_ws_close_code(ws, &code), FAL_RT_OK);
    CHECK(code == 0); /* still open */
    CHECK_RC(fal_rt_ws_send_text(ws, "ok", NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_recv(ws, WAIT_MS, &f, NULL), FAL_RT_OK);
    fal_rt_frame_free(f);
    /* A valid close: the server's reply (the same code and reason) ends it. */
    CHECK_RC(fal_rt_ws_close_with(ws, 4000, (const uint8_t *)"bye now", 7, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_send_text(ws, "late", &err), FAL_RT_CLOSED);
    fal_rt_error_free(err);
    err = NULL;
    rc = fal_rt_ws_recv(ws, WAIT_MS, &f, &err);
    CHECK(rc == FAL_RT_END || rc == FAL_RT_CLOSED);
    fal_rt_error_free(err);
    CHECK_RC(fal_rt_ws_close_code(ws, &code), FAL_RT_OK);
    CHECK(code == 4000);
    CHECK_RC(fal_rt_ws_close_reason(ws, &reason), FAL_RT_OK);
    CHECK(reason != NULL && strcmp(reason, "bye now") == 0);
    fal_rt_string_free(reason);
    fal_rt_ws_free(ws);

    /* Callback sockets: interrupt does not apply; the close code comes to on_close. */
    recorder r;
    recorder_init(&r);
    fal_rt_ws_handler h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.user_data = &r;
    h.on_message = ws_on_message;
    h.on_close = ws_on_close;
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &o, &h, &ws, NULL), FAL_RT_OK);
    CHECK_RC(fal_rt_ws_interrupt(ws), FAL_RT_WRONG_MODE);
    CHECK_RC(fal_rt_ws_close_with(ws, 1000, (const uint8_t *)"done", 4, NULL), FAL_RT_OK);
    CHECK(wait_for(&r, &r.closes, 1));
    CHECK(read_int(&r, &r.last_close_code) == 1000);
    CHECK_RC(fal_rt_ws_close_reason(ws, &reason), FAL_RT_OK);
    CHECK(reason != NULL && strcmp(reason, "done") == 0);
    fal_rt_string_free(reason);
    fal_rt_ws_free(ws);
    recorder_destroy(&r);
    fal_rt_client_free(client);
}

static int g_cancel_freed = 0;
static void count_cancel_free(void *ud) {
    (void)ud;
    __atomic_add_fetch(&g_cancel_freed, 1, __ATOMIC_SEQ_CST);
}

static void test_cancel_token(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_cancel_token *tok = NULL;
    CHECK_RC(fal_rt_cancel_token_new(NULL), FAL_RT_NULL_ARGUMENT);
    CHECK_RC(fal_rt_cancel_token_new(&tok), FAL_RT_OK);
    CHECK(!fal_rt_cancel_token_is_cancelled(tok));
    /* Not cancelled: connects as usual. */
    fal_rt_connect_options o = no_throttle();
    o.cancel = tok;
    fal_rt_session *s = NULL;
    CHECK_RC(fal_rt_session_connect(client, "demo/echo", &o, &s, NULL), FAL_RT_OK);
    fal_rt_session_free(s);
    s = NULL;
    /* Cancelled from another thread while the handshake hangs (demo/stall never answers). */
    g_cancel_freed = 0;
    o.free_callbacks_user_data = count_cancel_free;
    poke_arg a = {NULL, NULL, tok, 100, FAL_RT_PANIC};
    pthread_t t;
    pthread_create(&t, NULL, poke_thread, &a);
    fal_rt_error *err = NULL;
    fal_rt_result rc = fal_rt_session_connect(client, "demo/stall", &o, &s, &err);
    pthread_join(t, NULL);
    CHECK_RC(rc, FAL_RT_INTERRUPTED);
    CHECK(s == NULL && err == NULL);
    CHECK(__atomic_load_n(&g_cancel_freed, __ATOMIC_SEQ_CST) == 1); /* finalizer ran */
    CHECK(fal_rt_cancel_token_is_cancelled(tok));
    /* Once cancelled, it stays so: ws connects return at once too. */
    fal_rt_ws *ws = NULL;
    o.path = "/raw";
    CHECK_RC(fal_rt_ws_connect(client, "demo/echo", &o, NULL, &ws, &err), FAL_RT_INTERRUPTED);
    CHECK(ws == NULL && err == NULL);
    CHECK(__atomic_load_n(&g_cancel_freed, __ATOMIC_SEQ_CST) == 2);
    CHECK_RC(fal_rt_cancel_token_cancel(tok), FAL_RT_OK); /* idempotent */
    fal_rt_cancel_token_free(tok);
    fal_rt_cancel_token_free(NULL);
    fal_rt_client_free(client);
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"version", test_version},
        {"null_arguments", test_null_arguments},
        {"client_options", test_client_options},
        {"realtime_results", test_realtime_results},
        {"message_clone", test_message_clone},
        {"bad_app_id", test_bad_app_id},
        {"bad_max_buffering", test_bad_max_buffering},
        {"wrong_key_is_unauthorized", test_wrong_key_is_unauthorized},
        {"token_provider_unauthorized", test_token_provider_unauthorized},
        {"server_error", test_server_error},
        {"abnormal_close_code", test_abnormal_close_code},
        {"close_inside_callback", test_close_inside_callback},
        {"free_inside_callback", test_free_inside_callback},
        {"blocking_call_inside_callback_is_refused", test_blocking_call_inside_callback_is_refused},
        {"send_from_threads", test_send_from_threads},
        {"free_while_in_flight", test_free_while_in_flight},
        {"connection_key_reuse", test_connection_key_reuse},
        {"custom_codec_and_header_auth", test_custom_codec_and_header_auth},
        {"session_pull", test_session_pull},
        {"session_threads", test_session_threads},
        {"sends_wait_for_the_socket", test_sends_wait_for_the_socket},
        {"ws_callbacks", test_ws_callbacks},
        {"ws_pull", test_ws_pull},
        {"free_then_use_inside_callback", test_free_then_use_inside_callback},
        {"ws_and_session_free_then_use_inside_callback", test_ws_and_session_free_then_use_inside_callback},
        {"session_send_after_end_fails", test_session_send_after_end_fails},
        {"argument_checks", test_argument_checks},
        {"keepalive_pings", test_keepalive_pings},
        {"fault_matrix", test_fault_matrix},
        {"finalizers_on_failed_connect", test_finalizers_on_failed_connect},
        {"session_interrupt", test_session_interrupt},
        {"ws_interrupt_and_close_with", test_ws_interrupt_and_close_with},
        {"cancel_token", test_cancel_token},
    };
    return run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
}
