// Package shipped lists the local stores the module ships, so that the
// tests of every transport run the engine end to end over each of them:
// together they cover every (store, transport) pair.
package shipped
