// Package syncbuf is a bytes.Buffer safe for concurrent writers and
// readers, for tests that capture the logs or output of code running in
// other goroutines or processes.
package syncbuf
