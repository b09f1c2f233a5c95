package goid

import "testing"

func TestCurrentDiffersPerGoroutine(t *testing.T) {
	here := Current()
	if here == 0 {
		t.Fatal("no id parsed")
	}
	if again := Current(); again != here {
		t.Fatalf("same goroutine, ids %d and %d", here, again)
	}
	other := make(chan uint64)
	go func() { other <- Current() }()
	if id := <-other; id == here || id == 0 {
		t.Fatalf("another goroutine got id %d (this one %d)", id, here)
	}
}
