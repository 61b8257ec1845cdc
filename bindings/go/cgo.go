// Package falrealtime is a Go binding of fal-realtime's C ABI
// (include/fal_realtime.h): callback-style realtime connections (Conn, with
// Recv and optional handler functions), pull-style sessions (Session) with
// context cancellation, and the library's log records (SetLogger).
//
// The library is linked from ../../target/release (build it with
// `cargo build --release -p fal-realtime`); set CGO_LDFLAGS / CGO_CFLAGS to
// use an installed copy instead.
package falrealtime

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lfal_realtime
#include <stdlib.h>
#include "fal_realtime.h"

void falrt_go_fill_handler(fal_rt_realtime_handler *h, uintptr_t handle);
void falrt_go_set_token_provider(fal_rt_connect_options *o, uintptr_t handle);
int32_t falrt_go_set_logger(int32_t level, uintptr_t handle);
*/
import "C"
