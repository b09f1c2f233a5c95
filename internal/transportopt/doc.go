// Package transportopt holds the option plumbing that the transports
// (redistransport, natstransport, servicebustransport) share: applying
// functional options over defaults, filling zero fields with their
// defaults, and the invalid-option errors that name the setting.
//
// Each transport keeps its own exported Options struct, Option type and
// defaults; this package only does the work that is the same for all of
// them, so that their behaviour and error texts stay alike.
package transportopt
