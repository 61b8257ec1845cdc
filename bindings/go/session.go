package falrealtime

/*
#include <stdlib.h>
#include "fal_realtime.h"
*/
import "C"

import (
	"context"
	"sync"
	"time"
	"unsafe"
)

// pollInterval bounds each blocking fal_rt_session_recv so Recv notices ctx.
const pollInterval = 50 * time.Millisecond

// Session is a pull-style realtime session: connected at creation, then
// Send and Recv on the calling goroutines (no callbacks). One goroutine may
// Recv while others Send.
type Session struct {
	mu  sync.RWMutex // guards ptr; held for reading during C calls on it
	ptr *C.fal_rt_session
	rmu sync.Mutex // serialises Recv
}

// OpenSession connects a session to app, waiting until the socket is open,
// the client's open timeout expires, or ctx is done (then the connect that is
// still running is abandoned and its session freed when it completes).
func OpenSession(ctx context.Context, client *Client, app string, opts *ConnectOptions) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type outcome struct {
		s   *C.fal_rt_session
		err error
	}
	done := make(chan outcome, 1)
	client.mu.RLock()
	cp := client.ptr
	if cp == nil {
		client.mu.RUnlock()
		return nil, ErrClosed
	}
	go func() {
		defer client.mu.RUnlock()
		var strs cstrings
		defer strs.free()
		co := opts.c(&strs)
		capp := C.CString(app)
		defer C.free(unsafe.Pointer(capp))
		var out *C.fal_rt_session
		var cerr *C.fal_rt_error
		if rc := C.int32_t(C.fal_rt_session_connect(cp, capp, &co, &out, &cerr)); rc != codeOK {
			done <- outcome{err: takeError(rc, cerr)}
			return
		}
		done <- outcome{s: out}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, o.err
		}
		return &Session{ptr: o.s}, nil
	case <-ctx.Done():
		go func() {
			if o := <-done; o.s != nil {
				C.fal_rt_session_free(o.s)
			}
		}()
		return nil, ctx.Err()
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

// Recv waits for the next result until ctx is done. Returns ErrEnd once the
// session ended cleanly, an *Error for server errors and abnormal ends
// (after KindServer and KindDecode the session goes on), ctx.Err() when ctx
// is done first.
func (s *Session) Recv(ctx context.Context) (*Result, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := pollInterval
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < wait {
				wait = left
			}
		}
		if wait < 0 {
			wait = 0
		}
		r, rc, err := s.recvOnce(int32(wait / time.Millisecond))
		switch {
		case rc == codeOK:
			return r, nil
		case rc == codeTimeoutExpired:
			continue
		case rc == codeEnd:
			return nil, ErrEnd
		default:
			return nil, err
		}
	}
}

func (s *Session) recvOnce(ms int32) (*Result, C.int32_t, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return nil, -1, ErrClosed
	}
	var m *C.fal_rt_message
	var cerr *C.fal_rt_error
	rc := C.int32_t(C.fal_rt_session_recv(s.ptr, C.int32_t(ms), &m, &cerr))
	switch rc {
	case codeOK:
		r := resultFrom(m)
		C.fal_rt_message_free(m)
		return r, rc, nil
	case codeTimeoutExpired, codeEnd:
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
// A Recv in progress returns ErrClosed within its poll interval. Idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	p := s.ptr
	s.ptr = nil
	s.mu.Unlock()
	if p != nil {
		C.fal_rt_session_free(p)
	}
	return nil
}
