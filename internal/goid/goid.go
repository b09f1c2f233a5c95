package goid

import (
	"bytes"
	"runtime"
	"strconv"
)

// Current returns the current goroutine's id, parsed from the first line of
// its stack trace ("goroutine 42 [running]:"). It costs a stack walk: use
// it on slow paths only.
func Current() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
