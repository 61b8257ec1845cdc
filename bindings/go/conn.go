package falrealtime

/*
#include <stdlib.h>
#include "fal_realtime.h"

void falrt_go_fill_handler(fal_rt_realtime_handler *h, uintptr_t handle);
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// State of a Conn.
type State int32

const (
	StateIdle           State = 0
	StateAuthenticating State = 1
	StateConnecting     State = 2
	StateOpen           State = 3
	StateClosed         State = 4
)

// Handler functions of a Conn, all optional. They run on the library's
// threads (never concurrently for one Conn) and may call Send and Close on
// it. Results and errors not taken by a handler function are queued for Recv.
type Handler struct {
	OnResult func(c *Conn, r *Result)
	OnError  func(c *Conn, e *Error)
	OnState  func(c *Conn, s State)
}

// Conn is a callback-style realtime connection: lazy connect on the first
// send, latest-wins while connecting, throttled sends, reconnect on the next
// send after any close. Safe for concurrent use.
type Conn struct {
	mu      sync.RWMutex // guards ptr; held for reading during C calls on it
	ptr     *C.fal_rt_realtime
	handler Handler

	qmu    sync.Mutex
	queue  []event
	notify chan struct{} // cap 1: something was queued
	freed  chan struct{} // closed by the finalizer
}

type event struct {
	result *Result
	err    *Error
}

// Connect makes a realtime connection to app (e.g. "fal-ai/fast-lcm-diffusion").
// It returns at once; the socket opens on the first send. ctx only bounds
// this call (it never blocks); opts and h may be nil.
func Connect(ctx context.Context, client *Client, app string, opts *ConnectOptions, h *Handler) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &Conn{notify: make(chan struct{}, 1), freed: make(chan struct{})}
	if h != nil {
		c.handler = *h
	}
	var strs cstrings
	defer strs.free()
	co := opts.c(&strs)
	capp := C.CString(app)
	defer C.free(unsafe.Pointer(capp))
	// The handle is released by the finalizer (falrtGoOnFree), which the
	// library calls exactly once, also when the connect fails.
	handle := cgo.NewHandle(c)
	var hd C.fal_rt_realtime_handler
	C.falrt_go_fill_handler(&hd, C.uintptr_t(handle))
	client.mu.RLock()
	defer client.mu.RUnlock()
	if client.ptr == nil {
		handle.Delete()
		return nil, ErrClosed
	}
	// The library writes *out before any callback can run; Go memory may
	// not be kept by C, so receive it in C memory.
	out := (**C.fal_rt_realtime)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(out))
	*out = nil
	var cerr *C.fal_rt_error
	opts.attach(&co)
	c.mu.Lock() // callbacks that call Send/Close wait until ptr is set
	rc := C.int32_t(C.fal_rt_realtime_connect(client.ptr, capp, &co, &hd, out, &cerr))
	if rc != codeOK {
		c.mu.Unlock()
		return nil, takeError(rc, cerr)
	}
	c.ptr = *out
	c.mu.Unlock()
	return c, nil
}

// Send queues an input, marshalled to JSON (json.RawMessage is sent as is).
// Never blocks; connection errors arrive later (Recv or OnError).
func (c *Conn) Send(v any) error {
	cs, err := marshalInput(v)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cs))
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	var cerr *C.fal_rt_error
	if rc := C.int32_t(C.fal_rt_realtime_send_json(c.ptr, cs, &cerr)); rc != codeOK {
		return takeError(rc, cerr)
	}
	return nil
}

// SendJSON queues an input given as JSON text.
func (c *Conn) SendJSON(text string) error { return c.Send(rawJSON(text)) }

// SendMsgpack queues an input given as msgpack bytes (exactly one value).
func (c *Conn) SendMsgpack(b []byte) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	var p *C.uint8_t
	if len(b) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&b[0])) // read during the call only
	}
	var cerr *C.fal_rt_error
	if rc := C.int32_t(C.fal_rt_realtime_send(c.ptr, p, C.size_t(len(b)), &cerr)); rc != codeOK {
		return takeError(rc, cerr)
	}
	return nil
}

// Disconnect closes the socket (code 1000); the next Send reconnects.
func (c *Conn) Disconnect() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	C.fal_rt_realtime_close(c.ptr)
	return nil
}

// State is the current connection state.
func (c *Conn) State() State {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return StateClosed
	}
	var s C.fal_rt_state
	C.fal_rt_realtime_state(c.ptr, &s)
	return State(s)
}

// Recv waits for the next queued result (or error, as *Error) until ctx is done.
func (c *Conn) Recv(ctx context.Context) (*Result, error) {
	for {
		c.qmu.Lock()
		if len(c.queue) > 0 {
			ev := c.queue[0]
			c.queue = c.queue[1:]
			c.qmu.Unlock()
			if ev.err != nil {
				return nil, ev.err
			}
			return ev.result, nil
		}
		c.qmu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.notify:
		case <-c.freed:
			c.qmu.Lock()
			n := len(c.queue)
			c.qmu.Unlock()
			if n == 0 {
				return nil, ErrClosed
			}
		}
	}
}

// Close frees the connection (closing the socket). Outside handler functions
// it waits until no handler function runs: none is called after it returns.
// Inside one it does not wait (the running one finishes; no other starts).
// Calling it again is a no-op.
func (c *Conn) Close() error {
	c.mu.Lock()
	p := c.ptr
	c.ptr = nil
	c.mu.Unlock()
	if p != nil {
		// Blocks outside callbacks; deferred when called from one (the library
		// sees that this thread is running one of its callbacks).
		C.fal_rt_realtime_free(p)
	}
	return nil
}

func (c *Conn) push(ev event) {
	c.qmu.Lock()
	c.queue = append(c.queue, ev)
	c.qmu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}
