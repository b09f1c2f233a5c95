package transportopt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

type options struct {
	N    int
	D    time.Duration
	Name string
	P    *int
}

type option func(*options)

func TestApply(t *testing.T) {
	o := transportopt.Apply(options{N: 1}, []option{
		func(o *options) { o.N++ },
		func(o *options) { o.Name = "x" },
		func(o *options) { o.N *= 10 },
	})
	if o.N != 20 || o.Name != "x" {
		t.Fatalf("Apply = %+v; want N 20, Name x", o)
	}
	if got := transportopt.Apply[options, option](options{N: 3}, nil); got.N != 3 {
		t.Fatalf("Apply without options = %+v", got)
	}
}

func TestFill(t *testing.T) {
	one := 1
	var o options
	transportopt.Fill(&o.N, 5)
	transportopt.Fill(&o.D, time.Second)
	transportopt.Fill(&o.Name, "def")
	transportopt.Fill(&o.P, &one)
	if o.N != 5 || o.D != time.Second || o.Name != "def" || o.P != &one {
		t.Fatalf("Fill of zero fields = %+v", o)
	}
	two := 2
	o = options{N: -1, D: time.Minute, Name: "set", P: &two}
	transportopt.Fill(&o.N, 5)
	transportopt.Fill(&o.D, time.Second)
	transportopt.Fill(&o.Name, "def")
	transportopt.Fill(&o.P, &one)
	if o.N != -1 || o.D != time.Minute || o.Name != "set" || o.P != &two {
		t.Fatalf("Fill changed set fields: %+v", o)
	}
}

func TestInvalid(t *testing.T) {
	cause := errors.New("bad token")
	err := transportopt.Invalid("xtransport", "Prefix %q: %w", "a b", cause)
	if !errors.Is(err, core.ErrInvalidOption) || !errors.Is(err, cause) {
		t.Fatalf("Invalid = %v; want it to wrap ErrInvalidOption and the cause", err)
	}
	if want := `backplane: invalid option: xtransport: Prefix "a b": bad token`; err.Error() != want {
		t.Fatalf("Invalid = %q; want %q", err, want)
	}
}

func TestNonNegative(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{transportopt.NonNegative("xtransport", "MaxPayload", 0), ""},
		{transportopt.NonNegative("xtransport", "MaxPayload", 7), ""},
		{transportopt.NonNegative("xtransport", "MaxPayload", -1), "backplane: invalid option: xtransport: MaxPayload -1 < 0"},
		{transportopt.NonNegative("xtransport", "Wait", -time.Second), "backplane: invalid option: xtransport: Wait -1s < 0"},
	}
	for _, c := range cases {
		switch {
		case c.want == "" && c.err != nil:
			t.Errorf("NonNegative = %v; want nil", c.err)
		case c.want != "" && (c.err == nil || c.err.Error() != c.want || !errors.Is(c.err, core.ErrInvalidOption)):
			t.Errorf("NonNegative = %v; want %q wrapping ErrInvalidOption", c.err, c.want)
		}
	}
}

func TestFirst(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	if err := transportopt.First(nil, a, b); err != a {
		t.Fatalf("First = %v; want a", err)
	}
	if err := transportopt.First(nil, nil); err != nil {
		t.Fatalf("First of nils = %v", err)
	}
	if err := transportopt.First(); err != nil {
		t.Fatalf("First() = %v", err)
	}
}
