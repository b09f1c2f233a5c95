package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// RequireEnv is the environment variable that turns a missing-server skip
// into a failure.
const RequireEnv = "BACKPLANE_REQUIRE_SERVICES"

// Required reports whether missing servers must fail tests.
func Required() bool {
	v, _ := strconv.ParseBool(os.Getenv(RequireEnv))
	return v
}

// Unavailable skips t with a loud reason, or fails it when Required.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("REQUIRED SERVICE MISSING ("+RequireEnv+"=1): "+format, args...)
	}
	t.Skipf("SKIPPED, SERVICE MISSING (set "+RequireEnv+"=1 to fail instead): "+format, args...)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
