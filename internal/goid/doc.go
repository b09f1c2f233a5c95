// Package goid tells which goroutine is running, so that a transport can
// recognise a call made from its own delivery goroutine (a Close from inside
// a handler must not wait for itself).
package goid
