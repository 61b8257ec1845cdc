package falrealtime

/*
#include "fal_realtime.h"
*/
import "C"

import (
	"encoding/json"
	"unsafe"
)

// Result is one result of the app: the server's msgpack bytes, and the same as JSON.
type Result struct {
	Msgpack   []byte
	JSON      string
	RequestID string
}

// Decode unmarshals the JSON form of the result into v.
func (r *Result) Decode(v any) error { return json.Unmarshal([]byte(r.JSON), v) }

// resultFrom copies a (borrowed or owned) C message into Go memory.
func resultFrom(m *C.fal_rt_message) *Result {
	r := &Result{}
	var n C.size_t
	if p := C.fal_rt_message_data(m, &n); p != nil {
		r.Msgpack = C.GoBytes(unsafe.Pointer(p), C.int(n))
	}
	var idn C.size_t
	if p := C.fal_rt_message_request_id(m, &idn); p != nil {
		r.RequestID = C.GoStringN(p, C.int(idn))
	}
	var js *C.char
	var jn C.size_t
	if C.int32_t(C.fal_rt_message_to_json(m, &js, &jn, nil)) == codeOK {
		r.JSON = C.GoStringN(js, C.int(jn))
		C.fal_rt_string_free(js)
	}
	return r
}

func marshalInput(v any) (*C.char, error) {
	var text []byte
	switch t := v.(type) {
	case json.RawMessage:
		text = t
	case rawJSON:
		text = []byte(t)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		text = b
	}
	return C.CString(string(text)), nil
}

// rawJSON is JSON text sent as is.
type rawJSON string
