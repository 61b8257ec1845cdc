package falrealtime

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests need the emulator: FAL_RT_EMULATOR=127.0.0.1:PORT, and for the
// idle-timeout tests FAL_RT_EMULATOR_TIMEOUT (one started with --session-timeout 1).

const wait = 30 * time.Second

func emulator(t *testing.T, env string) *Client {
	t.Helper()
	host := os.Getenv(env)
	if host == "" {
		t.Skipf("%s not set", env)
	}
	c, err := NewClient(ClientOptions{
		Key: "test-key", RunHost: "ws://" + host, RestURL: "http://" + host,
		AllowInsecure: true, TokenRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

type input struct {
	Do   string `json:"do,omitempty"`
	Code int    `json:"code,omitempty"`
	N    int    `json:"n"`
}

func TestConnResults(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	conn, err := Connect(ctx, c, "demo/echo", &ConnectOptions{NoThrottle: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 3; i++ {
		if err := conn.Send(input{N: i}); err != nil {
			t.Fatal(err)
		}
		r, err := conn.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got input
		if err := r.Decode(&got); err != nil || got.N != i {
			t.Fatalf("result %q (%v), want n=%d", r.JSON, err, i)
		}
		if len(r.Msgpack) == 0 {
			t.Fatal("no msgpack bytes")
		}
	}
	if s := conn.State(); s != StateOpen {
		t.Fatalf("state %d, want open", s)
	}
}

func TestConnServerError(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	conn, err := Connect(ctx, c, "demo/control", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send(input{Do: "error_bin"}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Recv(ctx)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindServer {
		t.Fatalf("got %v, want a server error", err)
	}
	if !errors.Is(err, &Error{Kind: KindServer}) {
		t.Fatal("errors.Is by kind")
	}
	// The connection stays up.
	if err := conn.Send(input{N: 7}); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.Recv(ctx); err != nil || !strings.Contains(r.JSON, `"n":7`) {
		t.Fatalf("after the error: %v %v", r, err)
	}
}

func TestConnAbnormalClose(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	conn, err := Connect(ctx, c, "demo/control", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send(input{Do: "close", Code: 4001}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Recv(ctx)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindClosed || fe.CloseCode != 4001 {
		t.Fatalf("got %#v, want closed with 4001", err)
	}
	// The next send reconnects.
	if err := conn.Send(input{N: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Recv(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConnUnauthorized(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	conn, err := Connect(ctx, c, "demo/control", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Send(input{Do: "unauthorized"})
	_, err = conn.Recv(ctx)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindAuth {
		t.Fatalf("got %v, want auth", err)
	}
}

func TestConnCloseStopsCallbacks(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	var closed atomic.Bool
	var after atomic.Int32
	got := make(chan struct{}, 100)
	conn, err := Connect(ctx, c, "demo/echo", &ConnectOptions{NoThrottle: true}, &Handler{
		OnResult: func(*Conn, *Result) {
			if closed.Load() {
				after.Add(1)
			}
			got <- struct{}{}
		},
		OnState: func(*Conn, State) {
			if closed.Load() {
				after.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.Send(input{N: 1})
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no result")
	}
	for i := 0; i < 20; i++ {
		conn.Send(input{N: i})
	}
	conn.Close()
	closed.Store(true)
	time.Sleep(300 * time.Millisecond)
	if n := after.Load(); n != 0 {
		t.Fatalf("%d callbacks after Close returned", n)
	}
	if err := conn.Send(input{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if _, err := conn.Recv(ctx); err == nil {
		t.Fatal("recv after close")
	}
	conn.Close() // idempotent
}

func TestConnCloseInsideCallback(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	done := make(chan error, 1)
	conn, err := Connect(ctx, c, "demo/echo", nil, &Handler{
		OnResult: func(conn *Conn, _ *Result) {
			conn.Close() // deferred: must not deadlock
			done <- conn.Send(input{})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.Send(input{N: 1})
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("send after close in callback: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no result")
	}
	select {
	case <-conn.freed:
	case <-ctx.Done():
		t.Fatal("finalizer did not run")
	}
}

func TestConnReconnectAfterIdleTimeout(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR_TIMEOUT")
	ctx := ctxT(t)
	var states sync.Map
	conn, err := Connect(ctx, c, "demo/echo", nil, &Handler{
		OnState: func(_ *Conn, s State) { states.Store(s, true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Send(input{N: 1})
	if _, err := conn.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	// The server closes the idle session after 1 s.
	deadline := time.Now().Add(10 * time.Second)
	for conn.State() != StateClosed && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if conn.State() != StateClosed {
		t.Fatal("the server's idle timeout did not close the connection")
	}
	conn.Send(input{N: 2})
	r, err := conn.Recv(ctx)
	if err != nil || !strings.Contains(r.JSON, `"n":2`) {
		t.Fatalf("after the idle timeout: %v %v", r, err)
	}
}

func TestSession(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	s, err := OpenSession(ctx, c, "demo/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 3; i++ {
		if err := s.Send(input{N: i}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv(ctx)
		if err != nil || !strings.Contains(r.JSON, `"n":`) {
			t.Fatalf("%v %v", r, err)
		}
	}
	// Cancellation: nothing arrives, ctx ends the wait (the library's
	// interrupt, no polling), and the session goes on.
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	if _, err := s.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	c2, cancel2 := context.WithCancel(ctx)
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if _, err := s.Recv(c2); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want canceled", err)
	}
	if err := s.Send(input{N: 9}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(ctx); err != nil || !strings.Contains(r.JSON, `"n":9`) {
		t.Fatalf("after the cancelled Recv: %v %v", r, err)
	}
	// Close wakes a Recv blocked without a deadline.
	blocked := make(chan error, 1)
	go func() {
		_, err := s.Recv(context.Background())
		blocked <- err
	}()
	time.Sleep(100 * time.Millisecond)
	// Close ends the session: later calls fail.
	s.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Recv after Close: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not wake the blocked Recv")
	}
	if err := s.Send(input{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func TestSessionErrors(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	s, err := OpenSession(ctx, c, "demo/control", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Send(input{Do: "error_bin"})
	_, err = s.Recv(ctx)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindServer || fe.Body == "" {
		t.Fatalf("got %#v, want a server error with a body", err)
	}
	s.Send(input{Do: "close", Code: 4001})
	_, err = s.Recv(ctx)
	if !errors.As(err, &fe) || fe.Kind != KindClosed || fe.CloseCode != 4001 {
		t.Fatalf("got %#v, want closed 4001", err)
	}
	if err := s.Send(input{}); !errors.As(err, &fe) || fe.Kind != KindClosed {
		t.Fatalf("send after the end: %v", err)
	}
}

func TestSessionIdleTimeoutEnds(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR_TIMEOUT")
	ctx := ctxT(t)
	s, err := OpenSession(ctx, c, "demo/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Send(input{N: 1})
	if _, err := s.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, ErrEnd) {
		t.Fatalf("got %v, want ErrEnd after the idle timeout", err)
	}
}

func TestConnectErrors(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	_, err := Connect(ctxT(t), c, "", nil, nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindInvalidArgument {
		t.Fatalf("got %v, want invalid argument", err)
	}
	bad, err := NewClient(ClientOptions{Key: "wrong", RunHost: "ws://" + os.Getenv("FAL_RT_EMULATOR"),
		RestURL: "http://" + os.Getenv("FAL_RT_EMULATOR"), AllowInsecure: true, TokenRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = OpenSession(ctxT(t), bad, "demo/echo", nil)
	if !errors.As(err, &fe) || fe.Kind != KindAuth || fe.Status == 0 {
		t.Fatalf("got %#v, want auth with an HTTP status", err)
	}
}

func TestLogger(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	var opening atomic.Int32
	err := SetLogger(LogDebug, func(l LogLevel, target, msg string) {
		if l == LogDebug && strings.HasPrefix(target, "fal_realtime") && strings.HasPrefix(msg, "opening ") {
			opening.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := OpenSession(ctx, c, "demo/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := SetLogger(LogDebug, nil); err != nil {
		t.Fatal(err)
	}
	if opening.Load() == 0 {
		t.Fatal("no opening record")
	}
	n := opening.Load()
	s, err = OpenSession(ctx, c, "demo/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if opening.Load() != n {
		t.Fatal("records after logging was turned off")
	}
}

func TestConnConcurrentSendAndClose(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	var results atomic.Int32
	conn, err := Connect(ctx, c, "demo/echo", &ConnectOptions{NoThrottle: true}, &Handler{
		OnResult: func(conn *Conn, _ *Result) {
			results.Add(1)
			conn.Send(input{N: -1}) // re-entrant send
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := conn.Send(input{N: g*100 + i}); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
				_ = conn.State()
			}
		}(g)
	}
	deadline := time.Now().Add(10 * time.Second)
	for results.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	conn.Close() // races with the senders: they see ErrClosed
	wg.Wait()
	if results.Load() < 5 {
		t.Fatalf("only %d results", results.Load())
	}
	n := results.Load()
	time.Sleep(200 * time.Millisecond)
	if results.Load() != n {
		t.Fatal("results after Close returned")
	}
}

func TestOpenSessionCancelled(t *testing.T) {
	host := os.Getenv("FAL_RT_EMULATOR")
	if host == "" {
		t.Skip("FAL_RT_EMULATOR not set")
	}
	c, err := NewClient(ClientOptions{Key: "test-key", RunHost: "ws://" + host, RestURL: "http://" + host,
		AllowInsecure: true, TokenRetries: -1, OpenTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// "stall" never answers the upgrade: ctx ends the wait long before the open timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := OpenSession(ctx, c, "demo/stall", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := DialWS(ctx2, c, "demo/stall", &ConnectOptions{Path: "/realtime"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ws: got %v, want deadline exceeded", err)
	}
	// Without ctx, the client's open timeout applies.
	_, err = OpenSession(context.Background(), c, "demo/stall", nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindTimeout {
		t.Fatalf("got %v, want timeout", err)
	}
}

func TestWS(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	w, err := DialWS(ctx, c, "demo/echo", &ConnectOptions{Path: "/raw"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.SendText("hello"); err != nil {
		t.Fatal(err)
	}
	f, err := w.Recv(ctx)
	if err != nil || !f.Text || string(f.Data) != "hello" {
		t.Fatalf("%+v %v", f, err)
	}
	if err := w.SendBinary([]byte{0x93, 1, 2, 3}); err != nil { // msgpack [1, 2, 3]
		t.Fatal(err)
	}
	if f, err = w.Recv(ctx); err != nil || f.Text || len(f.Data) != 4 {
		t.Fatalf("%+v %v", f, err)
	}
	// ctx cancels a wait; the socket goes on.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := w.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if w.CloseCode() != 0 {
		t.Fatal("close code before the end")
	}
	var fe *Error
	if err := w.CloseWith(1005, ""); !errors.As(err, &fe) || fe.Kind != KindInvalidArgument {
		t.Fatalf("close 1005: %v", err)
	}
	if err := w.CloseWith(4000, "bye"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(ctx); err != nil && !errors.Is(err, ErrEnd) && !errors.As(err, &fe) {
		t.Fatalf("after close: %v", err)
	}
	if w.CloseCode() != 4000 || w.CloseReason() != "bye" {
		t.Fatalf("close %d %q", w.CloseCode(), w.CloseReason())
	}
	// An abnormal close from the server.
	ctl, err := DialWS(ctx, c, "demo/control", &ConnectOptions{Path: "/realtime"})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	closeCmd := []byte{0x82, 0xa2, 'd', 'o', 0xa5, 'c', 'l', 'o', 's', 'e', 0xa4, 'c', 'o', 'd', 'e', 0xcd, 0x0f, 0xa2}
	if err := ctl.SendBinary(closeCmd); err != nil { // msgpack {"do":"close","code":4002}
		t.Fatal(err)
	}
	for {
		_, err = ctl.Recv(ctx)
		if err != nil {
			break
		}
	}
	if !errors.As(err, &fe) || fe.Kind != KindClosed || fe.CloseCode != 4002 || ctl.CloseCode() != 4002 {
		t.Fatalf("got %v (close code %d), want closed 4002", err, ctl.CloseCode())
	}
}

func TestTokenProvider(t *testing.T) {
	c := emulator(t, "FAL_RT_EMULATOR")
	ctx := ctxT(t)
	var calls atomic.Int32
	var gotApp atomic.Value
	provider := func(app string) (string, error) {
		calls.Add(1)
		gotApp.Store(app)
		return "not-a-real-token", nil
	}
	// The emulator opens with any token and answers the first input Unauthorized.
	s, err := OpenSession(ctx, c, "demo/echo", &ConnectOptions{TokenProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if calls.Load() != 1 || !strings.Contains(gotApp.Load().(string), "echo") {
		t.Fatalf("provider calls %d, app %v", calls.Load(), gotApp.Load())
	}
	if err := s.Send(input{N: 1}); err != nil {
		t.Fatal(err)
	}
	var fe *Error
	if _, err := s.Recv(ctx); !errors.As(err, &fe) || fe.Kind != KindAuth {
		t.Fatalf("got %v, want auth", err)
	}
	// A failing provider fails the connect.
	failing := func(string) (string, error) { return "", errors.New("no token for you") }
	if _, err := OpenSession(ctx, c, "demo/echo", &ConnectOptions{TokenProvider: failing}); !errors.As(err, &fe) || fe.Kind != KindTokenProvider {
		t.Fatalf("got %v, want token provider error", err)
	}
	if _, err := DialWS(ctx, c, "demo/echo", &ConnectOptions{Path: "/raw", TokenProvider: failing}); !errors.As(err, &fe) || fe.Kind != KindTokenProvider {
		t.Fatalf("ws: got %v, want token provider error", err)
	}
}
