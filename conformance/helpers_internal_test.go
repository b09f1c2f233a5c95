package conformance

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSanitize(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 40, "plain"},
		{"a-b_c.d", 40, "a-b_c.d"},
		{"with space/and*star>", 40, "with_space_and_star_"},
		{"ключ", 40, "________"},
		{"abcdef", 3, "abc"},
		{"", 40, ""},
	} {
		if got := sanitize(c.in, c.max); got != c.want {
			t.Errorf("sanitize(%q, %d) = %q; want %q", c.in, c.max, got, c.want)
		}
	}
}

func TestNewNamespace(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
	t.Run("sub test/with odd*chars "+strings.Repeat("x", 100), func(t *testing.T) {
		a, b := newNamespace(t), newNamespace(t)
		if a == b {
			t.Errorf("two namespaces of one test are equal: %q", a)
		}
		for _, ns := range []string{a, b} {
			if !valid.MatchString(ns) {
				t.Errorf("namespace %q has characters outside [a-zA-Z0-9._-]", ns)
			}
			if len(ns) > 60 {
				t.Errorf("namespace %q is %d bytes long; want at most 60", ns, len(ns))
			}
			if strings.Contains(ns, "sub") {
				t.Errorf("namespace %q contains the parent test's name; want only the last element", ns)
			}
		}
	})
}

func TestEventually(t *testing.T) {
	n := 0
	if !eventually(time.Second, func() bool { n++; return n == 3 }) {
		t.Error("eventually gave up on a condition that became true")
	}
	if eventually(20*time.Millisecond, func() bool { return false }) {
		t.Error("eventually reported a condition that never held")
	}
}

func TestRecorderOverlapAndStrays(t *testing.T) {
	r := &recorder{name: "r", marker: "m:", counts: make(map[string]int)}
	r.HandleMessage([]byte("m:1"))
	r.HandleMessage([]byte("other"))
	r.HandleMessage(nil)
	if !r.has("m:1") || r.emptyCount() != 1 || r.strayReport() == "" {
		t.Errorf("recorder state: has=%v empties=%d strays=%q", r.has("m:1"), r.emptyCount(), r.strayReport())
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	r.onMessage = func(p []byte) {
		if string(p) == "m:block" {
			close(entered)
			<-release
		}
	}
	done := make(chan struct{})
	go func() { r.HandleMessage([]byte("m:block")); close(done) }()
	<-entered
	r.HandleMessage([]byte("m:2"))
	close(release)
	<-done
	if r.overlaps.Load() != 1 {
		t.Errorf("overlaps = %d; want 1", r.overlaps.Load())
	}
}
