package falrealtime

/*
#include "fal_realtime.h"
int32_t falrt_go_set_logger(int32_t level, uintptr_t handle);
*/
import "C"

import (
	"runtime/cgo"
	"sync"
)

// LogLevel of a log record (the library's fal_rt_log_level).
type LogLevel int32

const (
	LogError LogLevel = 1
	LogWarn  LogLevel = 2
	LogInfo  LogLevel = 3
	LogDebug LogLevel = 4
	LogTrace LogLevel = 5
)

// LogFunc receives one log record. It runs on any library thread,
// possibly concurrently: make it thread-safe and quick. Messages never
// contain tokens or keys.
type LogFunc func(level LogLevel, target, message string)

var logMu sync.Mutex
var logHandle cgo.Handle

// SetLogger routes the library's log records at level and more severe to f
// (nil: logging off). When it returns, the previous function is never called again.
func SetLogger(level LogLevel, f LogFunc) error {
	logMu.Lock()
	defer logMu.Unlock()
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(f)
	}
	if rc := C.int32_t(C.falrt_go_set_logger(C.int32_t(level), C.uintptr_t(h))); rc != codeOK {
		if h != 0 {
			h.Delete()
		}
		return &Error{Kind: Kind(rc), Message: "fal_rt_set_logger: " + Kind(rc).String()}
	}
	if logHandle != 0 {
		logHandle.Delete() // the library no longer calls the old function
	}
	logHandle = h
	return nil
}
