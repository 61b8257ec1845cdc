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

// Session is a pull-style realtime session: connected at creation, then
// Send and Recv on the calling goroutines (no callbacks). One goroutine may
// Recv while others Send.
type Session struct {
	mu     sync.RWMutex // guards ptr; held for reading during C calls on it
	ptr    *C.fal_rt_session
	rmu    sync.Mutex // serialises Recv
	closed atomic.Bool
}

// watch calls poke once if ctx is done before stop is called; stop returns
// after the watcher has finished (so poke never runs after it).
func watch(ctx context.Context, poke func()) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			poke()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// recvLoop is Recv of sessions and raw sockets: one blocking library recv
// at a time (once), woken by interrupt when ctx is done or Close runs. An
// interrupt that is neither (left from an earlier Recv) waits again.
func recvLoop[T any](ctx context.Context, interrupt func(), closed *atomic.Bool, once func() (T, C.int32_t, error)) (T, error) {
	var zero T
	stop := watch(ctx, interrupt)
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			return zero, err
		}
		v, rc, err := once()
		switch rc {
		case codeOK:
			return v, nil
		case codeInterrupted:
			if closed.Load() {
				return zero, ErrClosed
			}
		case codeEnd:
			return zero, ErrEnd
		default:
			return zero, err
		}
	}
}

// connectCancellable runs a blocking connect with a fal_rt_cancel_token in
// co that ctx cancels: it returns codeInterrupted when ctx ended it.
func connectCancellable(ctx context.Context, co *C.fal_rt_connect_options, connect func() C.int32_t) C.int32_t {
	var tok *C.fal_rt_cancel_token
	if C.fal_rt_cancel_token_new(&tok) != codeOK {
		return connect()
	}
	defer C.fal_rt_cancel_token_free(tok)
	co.cancel = tok
	stop := watch(ctx, func() { C.fal_rt_cancel_token_cancel(tok) })
	defer stop()
	return connect()
}

// OpenSession connects a session to app, waiting until the socket is open,
// the client's open timeout expires, or ctx is done (the library's cancel
// token interrupts the connect: nothing is left behind).
func OpenSession(ctx context.Context, client *Client, app string, opts *ConnectOptions) (*Session, error) {
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
	var out *C.fal_rt_session
	var cerr *C.fal_rt_error
	opts.attach(&co)
	rc := connectCancellable(ctx, &co, func() C.int32_t {
		return C.int32_t(C.fal_rt_session_connect(client.ptr, capp, &co, &out, &cerr))
	})
	switch rc {
	case codeOK:
		return &Session{ptr: out}, nil
	case codeInterrupted:
		return nil, ctx.Err()
	default:
		return nil, takeError(rc, cerr)
	}
}

// Send sends an input marshalled to JSON (json.RawMessage as is); blocks until written.
func (s *Session) Send(v any) error {
	cs, err := marshalInput(v)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cs))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return ErrClosed
	}
	var cerr *C.fal_rt_error
	if rc := C.int32_t(C.fal_rt_session_send_json(s.ptr, cs, &cerr)); rc != codeOK {
		return takeError(rc, cerr)
	}
	return nil
}

// SendJSON sends an input given as JSON text.
func (s *Session) SendJSON(text string) error { return s.Send(rawJSON(text)) }

// interrupt wakes a Recv blocked in the library (fal_rt_session_interrupt).
func (s *Session) interrupt() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr != nil {
		C.fal_rt_session_interrupt(s.ptr)
	}
}

// Recv waits for the next result until ctx is done. Returns ErrEnd once the
// session ended cleanly, an *Error for server errors and abnormal ends
// (after KindServer and KindDecode the session goes on), ctx.Err() when ctx
// is done first (the session goes on), ErrClosed after Close. No polling:
// ctx and Close wake the library's wait (fal_rt_session_interrupt).
func (s *Session) Recv(ctx context.Context) (*Result, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return recvLoop(ctx, s.interrupt, &s.closed, s.recvOnce)
}

func (s *Session) recvOnce() (*Result, C.int32_t, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return nil, -1, ErrClosed
	}
	var m *C.fal_rt_message
	var cerr *C.fal_rt_error
	rc := C.int32_t(C.fal_rt_session_recv(s.ptr, C.FAL_RT_WAIT_FOREVER, &m, &cerr))
	switch rc {
	case codeOK:
		r := resultFrom(m)
		C.fal_rt_message_free(m)
		return r, rc, nil
	case codeInterrupted, codeEnd:
		return nil, rc, nil
	default:
		return nil, rc, takeError(rc, cerr)
	}
}

// CloseSend closes the session (code 1000); results on the way may still be
// received, then Recv returns ErrEnd.
func (s *Session) CloseSend() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return ErrClosed
	}
	var cerr *C.fal_rt_error
	if rc := C.int32_t(C.fal_rt_session_close(s.ptr, &cerr)); rc != codeOK {
		return takeError(rc, cerr)
	}
	return nil
}

// Close closes (if still open, waiting at most 2 s) and frees the session.
// A Recv in progress returns ErrClosed at once. Idempotent.
func (s *Session) Close() error {
	s.closed.Store(true)
	s.interrupt()
	s.mu.Lock()
	p := s.ptr
	s.ptr = nil
	s.mu.Unlock()
	if p != nil {
		C.fal_rt_session_free(p)
	}
	return nil
}
