/*
 * The realtime demo in C: connect to an app, send frames, print each result,
 * close. Against the local emulator:
 *
 *     fal-realtime serve --port 8765 &
 *     ./realtime_demo 127.0.0.1:8765 demo/echo 5
 *
 * Against fal.ai: ./realtime_demo - fal-ai/fast-lcm-diffusion 5  (with FAL_KEY set).
 */
#define _POSIX_C_SOURCE 200809L
#include <fal_realtime.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct demo {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int results;
    int errors;
} demo;

/* Runs on a library thread. The message is borrowed for the call. */
static void on_result(void *user_data, const fal_rt_message *msg) {
    demo *d = user_data;
    char *json = NULL;
    if (fal_rt_message_to_json(msg, &json, NULL, NULL) == FAL_RT_OK) {
        size_t id_len = 0;
        const char *id = fal_rt_message_request_id(msg, &id_len);
        printf("result %.*s: %s\n", (int)id_len, id ? id : "", json);
        fal_rt_string_free(json);
    }
    pthread_mutex_lock(&d->mu);
    d->results++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void on_error(void *user_data, const fal_rt_error *err) {
    demo *d = user_data;
    fprintf(stderr, "error (%s): %s\n", fal_rt_result_name(fal_rt_error_kind(err)), fal_rt_error_message(err));
    pthread_mutex_lock(&d->mu);
    d->errors++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Wait until `want` results (or an error), at most 30 s. */
static int wait_results(demo *d, int want) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&d->mu);
    while (d->results < want && d->errors == 0)
        if (pthread_cond_timedwait(&d->cv, &d->mu, &ts) != 0) break;
    int ok = d->results >= want;
    pthread_mutex_unlock(&d->mu);
    return ok;
}

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "-";
    const char *app = argc > 2 ? argv[2] : "demo/echo";
    int frames = argc > 3 ? atoi(argv[3]) : 5;

    char run_host[256], rest_url[256];
    fal_rt_client_options copts = {.struct_size = sizeof copts};
    if (strcmp(host, "-") != 0) { /* the local emulator */
        snprintf(run_host, sizeof run_host, "ws://%s", host);
        snprintf(rest_url, sizeof rest_url, "http://%s", host);
        copts.key = "test-key";
        copts.run_host = run_host;
        copts.rest_url = rest_url;
        copts.allow_insecure = true;
    }
    fal_rt_client *client = NULL;
    fal_rt_error *err = NULL;
    if (fal_rt_client_new(&copts, &client, &err) != FAL_RT_OK) {
        fprintf(stderr, "client: %s\n", fal_rt_error_message(err));
        fal_rt_error_free(err);
        return 1;
    }
    printf("fal-realtime %s\n", fal_rt_version());

    demo d = {.results = 0, .errors = 0};
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    fal_rt_realtime_handler handler = {
        .struct_size = sizeof handler,
        .user_data = &d,
        .on_result = on_result,
        .on_error = on_error,
    };
    fal_rt_connect_options opts = {.struct_size = sizeof opts, .throttle_ms = FAL_RT_THROTTLE_NONE};
    fal_rt_realtime *conn = NULL;
    if (fal_rt_realtime_connect(client, app, &opts, &handler, &conn, &err) != FAL_RT_OK) {
        fprintf(stderr, "connect: %s\n", fal_rt_error_message(err));
        fal_rt_error_free(err);
        fal_rt_client_free(client);
        return 1;
    }

    /* One frame at a time: send, wait for its result. */
    for (int i = 0; i < frames; i++) {
        char input[128];
        snprintf(input, sizeof input, "{\"prompt\":\"a cat\",\"frame\":%d,\"request_id\":\"frame-%d\"}", i, i);
        if (fal_rt_realtime_send_json(conn, input, &err) != FAL_RT_OK) {
            fprintf(stderr, "send: %s\n", fal_rt_error_message(err));
            fal_rt_error_free(err);
            break;
        }
        if (!wait_results(&d, i + 1)) break;
    }

    fal_rt_stats stats = {.struct_size = sizeof stats};
    fal_rt_realtime_stats(conn, &stats);
    fal_rt_realtime_close(conn);
    fal_rt_realtime_free(conn); /* no callback runs after this returns */
    fal_rt_client_free(client);
    printf("done: %d results, %d errors, %llu frames sent\n", d.results, d.errors,
           (unsigned long long)stats.frames_sent);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    return d.results == frames && d.errors == 0 ? 0 : 1;
}
