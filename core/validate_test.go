package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Validate reports every invalid field at once, each error wrapping
// ErrInvalidOption and naming its field.
func TestValidateReportsEveryField(t *testing.T) {
	tests := []struct {
		name   string
		change func(*core.Options)
		want   []string
	}{
		{"valid", func(*core.Options) {}, nil},
		{"one", func(o *core.Options) { o.TTL = -1 }, []string{"TTL -1ns is negative"}},
		{"three", func(o *core.Options) {
			o.TTL, o.QueueSize, o.PublishTimeout = -time.Second, 0, 0
		}, []string{"TTL -1s", "QueueSize 0", "PublishTimeout 0s"}},
		{"policies and canary", func(o *core.Options) {
			o.OnGap, o.CanaryInterval, o.CanaryTimeout = core.Policy(9), -1, -1
		}, []string{"OnGap", "CanaryInterval", "CanaryTimeout"}},
		{"zero options", func(o *core.Options) { *o = core.Options{} }, []string{
			"MaxPeers", "MaxMissing", "MaxKeysPerCall", "MaxBatchKeys",
			"QueueSize", "PublishTimeout", "CloseTimeout", "Codec",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := core.DefaultOptions()
			tt.change(&o)
			err := o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("Validate = %v, want ErrInvalidOption", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Validate = %T, want an errors.Join", err)
			}
			if len(tt.want) > 1 && len(joined.Unwrap()) < len(tt.want) {
				t.Errorf("Validate reported %d errors, want at least %d:\n%v", len(joined.Unwrap()), len(tt.want), err)
			}
			for _, e := range joined.Unwrap() {
				if !errors.Is(e, core.ErrInvalidOption) {
					t.Errorf("%v does not wrap ErrInvalidOption", e)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, does not mention %q", err, w)
				}
			}
		})
	}
}
