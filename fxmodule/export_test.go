package fxmodule

import "github.com/backplane-go/backplane/core"

// ConfigFieldPaths lists the YAML paths of every Config field, for the
// completeness check of the field table test.
func ConfigFieldPaths() []string {
	var out []string
	for _, f := range configFields() {
		out = append(out, f.path)
	}
	return out
}

// HealthError is healthError, for tests of every health state.
func HealthError(h core.Health) error { return healthError(h) }
