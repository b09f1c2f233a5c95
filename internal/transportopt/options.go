package transportopt

import (
	"fmt"

	"github.com/backplane-go/backplane/core"
)

// Apply applies opts, in order, to o and returns the result. An Option
// type of a transport (func(*Options)) is an F.
func Apply[O any, F ~func(*O)](o O, opts []F) O {
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Fill sets *field to def when *field is the zero value of its type:
// "the zero value of a field means its default".
func Fill[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Invalid returns an error wrapping core.ErrInvalidOption in the form
// "<ErrInvalidOption>: <pkg>: <message>", the message made from format and
// args as by fmt.Errorf (so a %w among them is wrapped too).
func Invalid(pkg, format string, args ...any) error {
	return fmt.Errorf("%w: "+pkg+": "+format, append([]any{core.ErrInvalidOption}, args...)...)
}

// NonNegative returns nil when v >= 0 and otherwise Invalid(pkg,
// "<name> <v> < 0"), which names the setting. T is an int or a
// time.Duration (printed as "-1s").
func NonNegative[T ~int | ~int64](pkg, name string, v T) error {
	if v >= 0 {
		return nil
	}
	return Invalid(pkg, "%s %v < 0", name, v)
}

// First returns the first non-nil error of errs, so that a list of checks
// reports the first setting that fails, in the order written.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
