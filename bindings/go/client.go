package falrealtime

/*
#include <stdlib.h>
#include "fal_realtime.h"
void falrt_go_set_token_provider(fal_rt_connect_options *o, uintptr_t handle);
*/
import "C"

import (
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// ClientOptions configure a Client. Zero fields take the library's defaults
// (credentials and hosts from the environment).
type ClientOptions struct {
	Key           string // FAL_KEY format; "" = from the environment
	RunHost       string // host[:port] or ws://host:port (with AllowInsecure)
	RestURL       string // token endpoint base URL
	ExtraCAFile   string
	AllowInsecure bool
	OpenTimeout   time.Duration // token fetch + handshake; 0 = 90 s
	MaxFrameSize  uint64
	TokenRetries  int32 // 0 = default (3); negative: none
	PingInterval  time.Duration
	PingTimeout   time.Duration
}

// Client holds configuration and TLS roots; safe for concurrent use.
type Client struct {
	mu  sync.RWMutex
	ptr *C.fal_rt_client
}

type cstrings []*C.char

func (c *cstrings) str(s string) *C.char {
	if s == "" {
		return nil
	}
	p := C.CString(s)
	*c = append(*c, p)
	return p
}

func (c cstrings) free() {
	for _, p := range c {
		C.free(unsafe.Pointer(p))
	}
}

func ms32(d time.Duration) C.int32_t {
	if d < 0 {
		return -1
	}
	return C.int32_t(d / time.Millisecond)
}

// NewClient creates a client.
func NewClient(o ClientOptions) (*Client, error) {
	var strs cstrings
	defer strs.free()
	var co C.fal_rt_client_options
	co.struct_size = C.uint32_t(unsafe.Sizeof(co))
	co.key = strs.str(o.Key)
	co.run_host = strs.str(o.RunHost)
	co.rest_url = strs.str(o.RestURL)
	co.extra_ca_file = strs.str(o.ExtraCAFile)
	co.allow_insecure = C.bool(o.AllowInsecure)
	co.open_timeout_ms = C.uint32_t(o.OpenTimeout / time.Millisecond)
	co.max_frame_size = C.uint64_t(o.MaxFrameSize)
	co.token_retries = C.int32_t(o.TokenRetries)
	co.ping_interval_ms = ms32(o.PingInterval)
	co.ping_timeout_ms = ms32(o.PingTimeout)
	var out *C.fal_rt_client
	var cerr *C.fal_rt_error
	if rc := C.int32_t(C.fal_rt_client_new(&co, &out, &cerr)); rc != codeOK {
		return nil, takeError(rc, cerr)
	}
	return &Client{ptr: out}, nil
}

// Close frees the client. Connections made from it stay usable.
func (c *Client) Close() {
	c.mu.Lock()
	p := c.ptr
	c.ptr = nil
	c.mu.Unlock()
	if p != nil {
		C.fal_rt_client_free(p)
	}
}

// ConnectOptions of Connect and OpenSession (zero: defaults).
type ConnectOptions struct {
	ConnectionKey string // Conn only: reuse one live connection per key
	Throttle      time.Duration
	NoThrottle    bool  // Conn only: send inputs without throttling
	MaxBuffering  int32 // 1..60, 0 = server default
	Path          string
	HeaderAuth    bool
	TokenLife     time.Duration
	// TokenProvider replaces the token endpoint: it returns a token for app
	// (the normalised "{id}{path}"); an error fails the connect or refresh
	// (KindTokenProvider). Runs on a library thread, never concurrently for
	// one connection; it may block (e.g. ask your backend).
	TokenProvider TokenFunc
}

// TokenFunc is a token provider (ConnectOptions.TokenProvider).
type TokenFunc func(app string) (string, error)

// attach hands the Go callbacks of o to co as a cgo.Handle the library
// releases (exactly once, also when the connect fails). Call it right
// before the connect call.
func (o *ConnectOptions) attach(co *C.fal_rt_connect_options) {
	if o == nil || o.TokenProvider == nil {
		return
	}
	C.falrt_go_set_token_provider(co, C.uintptr_t(cgo.NewHandle(o.TokenProvider)))
}

func (o *ConnectOptions) c(strs *cstrings) C.fal_rt_connect_options {
	var co C.fal_rt_connect_options
	co.struct_size = C.uint32_t(unsafe.Sizeof(co))
	if o == nil {
		return co
	}
	co.connection_key = strs.str(o.ConnectionKey)
	co.throttle_ms = C.int32_t(o.Throttle / time.Millisecond)
	if o.NoThrottle {
		co.throttle_ms = -1
	}
	co.max_buffering = C.int32_t(o.MaxBuffering)
	co.path = strs.str(o.Path)
	co.header_auth = C.bool(o.HeaderAuth)
	co.token_expiration_ms = C.uint32_t(o.TokenLife / time.Millisecond)
	return co
}
