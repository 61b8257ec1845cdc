package falrealtime

/*
#include <stdlib.h>
#include "fal_realtime.h"
*/
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Frame is one data frame of a raw WebSocket.
type Frame struct {
	Data []byte
	Text bool // a text frame (UTF-8); else binary
}

// WS is a raw WebSocket to an app, with the same URL and auth rules as
// realtime connections (ConnectOptions.Path, default none: /{app}). Pull
// style: Recv on the calling goroutine, Send* from any goroutine. One
// goroutine may Recv while others send.
type WS struct {
	mu     sync.RWMutex // guards ptr; held for reading during C calls on it
	ptr    *C.fal_rt_ws
	rmu    sync.Mutex // serialises Recv
	closed atomic.Bool
}

// DialWS opens a raw WebSocket to app, waiting until it is open, the
// client's open timeout expires, or ctx is done (the connect is cancelled).
func DialWS(ctx context.Context, client *Client, app string, opts *ConnectOptions) (*WS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	client.mu.RLock()
	defer client.mu.RUnlock()
	if client.ptr == nil {
		return nil, ErrClosed
	}
	var strs cstrings
	defer strs.free()
	co := opts.c(&strs)
	capp := C.CString(app)
	defer C.free(unsafe.Pointer(capp))
	var out *C.fal_rt_ws
	var cerr *C.fal_rt_error
	opts.attach(&co)
	rc := connectCancellable(ctx, &co, func() C.int32_t {
		return C.int32_t(C.fal_rt_ws_connect(client.ptr, capp, &co, nil, &out, &cerr))
	})
	switch rc {
	case codeOK:
		return &WS{ptr: out}, nil
	case codeInterrupted:
		return nil, ctx.Err()
	default:
		return nil, takeError(rc, cerr)
	}
}

func (w *WS) call(f func(p *C.fal_rt_ws, cerr **C.fal_rt_error) C.int32_t) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ptr == nil {
		return ErrClosed
	}
	var cerr *C.fal_rt_error
	if rc := f(w.ptr, &cerr); rc != codeOK {
		return takeError(rc, cerr)
	}
	return nil
}

// SendText sends a text frame; blocks until it is written.
func (w *WS) SendText(text string) error {
	cs := C.CString(text)
	defer C.free(unsafe.Pointer(cs))
	return w.call(func(p *C.fal_rt_ws, e **C.fal_rt_error) C.int32_t {
		return C.int32_t(C.fal_rt_ws_send_text(p, cs, e))
	})
}

// SendBinary sends a binary frame; blocks until it is written.
func (w *WS) SendBinary(data []byte) error {
	var cp unsafe.Pointer
	if len(data) > 0 {
		cp = C.CBytes(data)
		defer C.free(cp)
	}
	return w.call(func(p *C.fal_rt_ws, e **C.fal_rt_error) C.int32_t {
		return C.int32_t(C.fal_rt_ws_send_binary(p, (*C.uint8_t)(cp), C.size_t(len(data)), e))
	})
}

// CloseWith sends a close frame with code (1000-1003, 1007-1014 or
// 3000-4999) and reason (at most 123 bytes of UTF-8): an *Error of
// KindInvalidArgument otherwise. Recv then returns ErrEnd (or an *Error of
// KindClosed) once the server replied, and CloseCode tells how it ended.
func (w *WS) CloseWith(code uint16, reason string) error {
	var cp unsafe.Pointer
	if reason != "" {
		cp = unsafe.Pointer(C.CString(reason))
		defer C.free(cp)
	}
	return w.call(func(p *C.fal_rt_ws, e **C.fal_rt_error) C.int32_t {
		return C.int32_t(C.fal_rt_ws_close_with(p, C.uint16_t(code), (*C.uint8_t)(cp), C.size_t(len(reason)), e))
	})
}

// CloseCode is how the socket ended: the code of the server's close frame,
// 1006 when it ended without one, 0 while it has not ended.
func (w *WS) CloseCode() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var code C.uint16_t
	if w.ptr == nil || C.fal_rt_ws_close_code(w.ptr, &code) != codeOK {
		return 0
	}
	return int(code)
}

// CloseReason is the reason of the server's close frame ("" while the socket
// has not ended, or if it had none).
func (w *WS) CloseReason() string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var r *C.char
	if w.ptr == nil || C.fal_rt_ws_close_reason(w.ptr, &r) != codeOK || r == nil {
		return ""
	}
	defer C.fal_rt_string_free(r)
	return C.GoString(r)
}

func (w *WS) interrupt() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ptr != nil {
		C.fal_rt_ws_interrupt(w.ptr)
	}
}

// Recv waits for the next data frame until ctx is done (then ctx.Err(); the
// socket goes on). ErrEnd after a normal close, an *Error (KindClosed with
// the close code, KindTimeout for a dead peer) for an abnormal end,
// ErrClosed after Close. ctx and Close wake the wait (fal_rt_ws_interrupt).
func (w *WS) Recv(ctx context.Context) (*Frame, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	return recvLoop(ctx, w.interrupt, &w.closed, w.recvOnce)
}

func (w *WS) recvOnce() (*Frame, C.int32_t, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ptr == nil {
		return nil, -1, ErrClosed
	}
	var f *C.fal_rt_frame
	var cerr *C.fal_rt_error
	rc := C.int32_t(C.fal_rt_ws_recv(w.ptr, C.FAL_RT_WAIT_FOREVER, &f, &cerr))
	switch rc {
	case codeOK:
		var n C.size_t
		data := C.fal_rt_frame_data(f, &n)
		out := &Frame{Data: C.GoBytes(unsafe.Pointer(data), C.int(n)), Text: bool(C.fal_rt_frame_is_text(f))}
		C.fal_rt_frame_free(f)
		return out, rc, nil
	case codeInterrupted, codeEnd:
		return nil, rc, nil
	default:
		return nil, rc, takeError(rc, cerr)
	}
}

// Close closes the socket (code 1000, if still open; waiting at most ~2 s)
// and frees it. A Recv in progress returns ErrClosed at once. Idempotent.
func (w *WS) Close() error {
	w.closed.Store(true)
	w.interrupt()
	w.mu.Lock()
	p := w.ptr
	w.ptr = nil
	w.mu.Unlock()
	if p != nil {
		C.fal_rt_ws_free(p)
	}
	return nil
}
