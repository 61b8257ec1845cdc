package falrealtime

/*
#include "fal_realtime.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// Kind is a fal_rt_result code: the kind of an Error.
type Kind int32

// The result codes of the C ABI (stable numbers).
const (
	KindInvalidArgument      Kind = 1
	KindCredentials          Kind = 2
	KindAuth                 Kind = 3
	KindHTTP                 Kind = 4
	KindTokenProvider        Kind = 5
	KindConnect              Kind = 6
	KindTLS                  Kind = 7
	KindTimeout              Kind = 8
	KindServer               Kind = 9
	KindClosed               Kind = 10
	KindDecode               Kind = 11
	KindEncode               Kind = 12
	KindNotConnected         Kind = 13
	KindInternal             Kind = 14
	KindNullArgument         Kind = 100
	KindInvalidUTF8          Kind = 101
	KindWouldBlockInCallback Kind = 102
	KindWouldBlockInRuntime  Kind = 103
	KindBadStructSize        Kind = 106
	KindWrongMode            Kind = 107
	KindAlreadySet           Kind = 108
	KindPanic                Kind = 199

	codeOK             = 0
	codeTimeoutExpired = 104
	codeEnd            = 105
	codeInterrupted    = 109
)

// String is the library's stable name of the code ("closed", "server", ...).
func (k Kind) String() string { return C.GoString(C.fal_rt_result_name(C.int32_t(k))) }

// Error is an error of the library: errors.As(err, &e) with e *Error.
type Error struct {
	Kind      Kind
	Message   string
	Status    int    // HTTP status, 0 if none
	CloseCode int    // WebSocket close code, 0 if none
	Body      string // the server's body, "" if none
}

func (e *Error) Error() string {
	s := fmt.Sprintf("fal-realtime %s: %s", e.Kind, e.Message)
	if e.CloseCode != 0 {
		s += fmt.Sprintf(" (close code %d)", e.CloseCode)
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	return s
}

// Is matches another *Error of the same Kind (errors.Is(err, &Error{Kind: KindClosed})).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Kind == e.Kind && t.Message == ""
}

// ErrClosed is returned by calls on a Conn or Session after Close.
var ErrClosed = errors.New("fal-realtime: use of a closed handle")

// ErrEnd is returned by Session.Recv and WS.Recv once the session or socket has ended cleanly.
var ErrEnd = errors.New("fal-realtime: session ended")

// errorFrom copies a borrowed or owned C error (nil-safe).
func errorFrom(e *C.fal_rt_error, code C.int32_t) *Error {
	if e == nil {
		return &Error{Kind: Kind(code), Message: C.GoString(C.fal_rt_result_name(code))}
	}
	out := &Error{
		Kind:      Kind(C.fal_rt_error_kind(e)),
		Message:   C.GoString(C.fal_rt_error_message(e)),
		Status:    int(C.fal_rt_error_status(e)),
		CloseCode: int(C.fal_rt_error_close_code(e)),
	}
	if b := C.fal_rt_error_body(e); b != nil {
		out.Body = C.GoString(b)
	}
	return out
}

// takeError turns a failed call's code and owned out_error into an *Error, freeing the C error.
func takeError(code C.int32_t, e *C.fal_rt_error) *Error {
	out := errorFrom(e, code)
	C.fal_rt_error_free(e)
	return out
}
