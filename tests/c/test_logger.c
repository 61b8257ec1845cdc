/*
 * Tests of the log sink (fal_rt_set_logger) against the emulator
 * (FAL_RT_EMULATOR=127.0.0.1:PORT). Run by scripts/test-logger.sh.
 */
#include "harness.h"

typedef struct log_rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int records;
    int opening;          /* "opening ..." records at DEBUG from fal_realtime* */
    int bad_level;        /* records above the level asked for */
    int reentrant_rc;     /* fal_rt_set_logger called from inside the callback */
    int try_reenter;
    int secrets;          /* messages containing the key */
} log_rec;

static log_rec g_log;

static void on_log(void *ud, fal_rt_log_level level, const char *target, const char *message) {
    log_rec *r = (log_rec *)ud;
    pthread_mutex_lock(&r->mu);
    r->records++;
    if (level > FAL_RT_LOG_DEBUG || level < FAL_RT_LOG_ERROR) r->bad_level++;
    if (level == FAL_RT_LOG_DEBUG && strncmp(target, "fal_realtime", 12) == 0 &&
        strncmp(message, "opening ", 8) == 0)
        r->opening++;
    if (strstr(message, "test-key") != NULL) r->secrets++;
    int reenter = r->try_reenter;
    r->try_reenter = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (reenter) {
        int rc = fal_rt_set_logger(FAL_RT_LOG_TRACE, on_log, ud);
        pthread_mutex_lock(&r->mu);
        r->reentrant_rc = rc;
        pthread_mutex_unlock(&r->mu);
    }
}

static int log_wait(log_rec *r, const int *field, int want) {
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
    return ok;
}

static int log_read(log_rec *r, const int *field) {
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* One session round trip, so the library logs "opening ...". */
static int session_round_trip(void) {
    fal_rt_client *client = emulator_client();
    fal_rt_session *s = NULL;
    int ok = 0;
    if (fal_rt_session_connect(client, "demo/echo", NULL, &s, NULL) == FAL_RT_OK &&
        fal_rt_session_send_json(s, "{\"x\":1}", NULL) == FAL_RT_OK) {
        fal_rt_message *m = NULL;
        ok = fal_rt_session_recv(s, WAIT_MS, &m, NULL) == FAL_RT_OK;
        fal_rt_message_free(m);
    }
    fal_rt_session_free(s);
    fal_rt_client_free(client);
    return ok;
}

static void test_opening_record_then_off(void) {
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_DEBUG, on_log, &g_log), FAL_RT_OK);
    CHECK(session_round_trip());
    CHECK(log_wait(&g_log, &g_log.opening, 1));
    CHECK(log_read(&g_log, &g_log.bad_level) == 0);
    CHECK(log_read(&g_log, &g_log.secrets) == 0);
    /* Logging off: no more records, not even after another connection. */
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_DEBUG, NULL, NULL), FAL_RT_OK);
    int before = log_read(&g_log, &g_log.records);
    CHECK(session_round_trip());
    sleep_ms(200);
    CHECK(log_read(&g_log, &g_log.records) == before);
}

static void test_level_filter(void) {
    /* At ERROR, a clean round trip logs nothing (no DEBUG "opening"). */
    int before = log_read(&g_log, &g_log.opening);
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_ERROR, on_log, &g_log), FAL_RT_OK);
    CHECK(session_round_trip());
    sleep_ms(100);
    CHECK(log_read(&g_log, &g_log.opening) == before);
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_ERROR, NULL, NULL), FAL_RT_OK);
}

static void test_not_reentrant(void) {
    /* Setting the logger from inside the callback is refused, not a deadlock. */
    pthread_mutex_lock(&g_log.mu);
    g_log.try_reenter = 1;
    g_log.reentrant_rc = -1;
    pthread_mutex_unlock(&g_log.mu);
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_DEBUG, on_log, &g_log), FAL_RT_OK);
    CHECK(session_round_trip());
    for (int i = 0; i < 100 && log_read(&g_log, &g_log.reentrant_rc) == -1; i++) sleep_ms(20);
    CHECK(log_read(&g_log, &g_log.reentrant_rc) == FAL_RT_WOULD_BLOCK_IN_CALLBACK);
    CHECK_RC(fal_rt_set_logger(FAL_RT_LOG_DEBUG, NULL, NULL), FAL_RT_OK);
}

int main(int argc, char **argv) {
    pthread_mutex_init(&g_log.mu, NULL);
    pthread_cond_init(&g_log.cv, NULL);
    static const test_case tests[] = {
        {"opening_record_then_off", test_opening_record_then_off},
        {"level_filter", test_level_filter},
        {"not_reentrant", test_not_reentrant},
    };
    return run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
}
