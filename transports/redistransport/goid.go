package redistransport

import (
	"bytes"
	"runtime"
	"strconv"
)

// goid returns the current goroutine's id, parsed from the first line of
// its stack trace ("goroutine 42 [running]:"). Close uses it to recognise a
// call from the delivery goroutine, which must not wait for itself.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
