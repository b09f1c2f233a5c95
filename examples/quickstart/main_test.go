package main

import "testing"

// The quickstart README points to runs as written.
func TestQuickstart(t *testing.T) { main() }
