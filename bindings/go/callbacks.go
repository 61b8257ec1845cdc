package falrealtime

/*
#include <stdint.h>
#include <stdlib.h>
#include "fal_realtime.h"
*/
import "C"

import "runtime/cgo"

//export falrtGoOnResult
func falrtGoOnResult(ud C.uintptr_t, m *C.fal_rt_message) {
	c := cgo.Handle(ud).Value().(*Conn)
	r := resultFrom(m)
	if f := c.handler.OnResult; f != nil {
		f(c, r)
		return
	}
	c.push(event{result: r})
}

//export falrtGoOnError
func falrtGoOnError(ud C.uintptr_t, e *C.fal_rt_error) {
	c := cgo.Handle(ud).Value().(*Conn)
	err := errorFrom(e, C.int32_t(C.fal_rt_error_kind(e)))
	if f := c.handler.OnError; f != nil {
		f(c, err)
		return
	}
	c.push(event{err: err})
}

//export falrtGoOnState
func falrtGoOnState(ud C.uintptr_t, s C.int32_t) {
	c := cgo.Handle(ud).Value().(*Conn)
	if f := c.handler.OnState; f != nil {
		f(c, State(s))
	}
}

//export falrtGoOnFree
func falrtGoOnFree(ud C.uintptr_t) {
	h := cgo.Handle(ud)
	c := h.Value().(*Conn)
	h.Delete()
	close(c.freed)
}

//export falrtGoOnLog
func falrtGoOnLog(ud C.uintptr_t, level C.int32_t, target *C.char, message *C.char) {
	if f, ok := cgo.Handle(ud).Value().(LogFunc); ok {
		f(LogLevel(level), C.GoString(target), C.GoString(message))
	}
}

//export falrtGoOnToken
func falrtGoOnToken(ud C.uintptr_t, app *C.char, out *C.fal_rt_buffer) C.int32_t {
	f, ok := cgo.Handle(ud).Value().(TokenFunc)
	if !ok {
		return 1
	}
	tok, err := f(C.GoString(app))
	if err != nil || tok == "" {
		return 1
	}
	p := C.CBytes([]byte(tok))
	defer C.free(p)
	if C.fal_rt_buffer_append(out, (*C.uint8_t)(p), C.size_t(len(tok))) != codeOK {
		return 1
	}
	return 0
}

//export falrtGoFreeHandle
func falrtGoFreeHandle(ud C.uintptr_t) { cgo.Handle(ud).Delete() }
