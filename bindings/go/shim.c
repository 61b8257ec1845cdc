// C trampolines between the library's callbacks and the Go functions
// exported in callbacks.go. user_data is a cgo.Handle (an integer), never a
// Go pointer.
#include <stdint.h>
#include "fal_realtime.h"
#include "_cgo_export.h"

static void tramp_on_result(void *ud, const fal_rt_message *m) {
    falrtGoOnResult((uintptr_t)ud, (fal_rt_message *)m);
}
static void tramp_on_error(void *ud, const fal_rt_error *e) {
    falrtGoOnError((uintptr_t)ud, (fal_rt_error *)e);
}
static void tramp_on_state(void *ud, fal_rt_state s) { falrtGoOnState((uintptr_t)ud, (int32_t)s); }
static void tramp_free(void *ud) { falrtGoOnFree((uintptr_t)ud); }
static void tramp_log(void *ud, fal_rt_log_level level, const char *target, const char *message) {
    falrtGoOnLog((uintptr_t)ud, (int32_t)level, (char *)target, (char *)message);
}

static int32_t tramp_token(void *ud, const char *app, fal_rt_buffer *out) {
    return falrtGoOnToken((uintptr_t)ud, (char *)app, out);
}
static void tramp_free_callbacks(void *ud) { falrtGoFreeHandle((uintptr_t)ud); }

void falrt_go_set_token_provider(fal_rt_connect_options *o, uintptr_t handle) {
    o->token_provider = tramp_token;
    o->callbacks_user_data = (void *)handle;
    o->free_callbacks_user_data = tramp_free_callbacks;
}

void falrt_go_fill_handler(fal_rt_realtime_handler *h, uintptr_t handle) {
    h->struct_size = sizeof *h;
    h->user_data = (void *)handle;
    h->on_result = tramp_on_result;
    h->on_error = tramp_on_error;
    h->on_state = tramp_on_state;
    h->free_user_data = tramp_free;
}

int32_t falrt_go_set_logger(int32_t level, uintptr_t handle) {
    if (handle == 0) return fal_rt_set_logger((fal_rt_log_level)level, NULL, NULL);
    return fal_rt_set_logger((fal_rt_log_level)level, tramp_log, (void *)handle);
}
