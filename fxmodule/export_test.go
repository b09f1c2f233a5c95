package fxmodule

// ConfigFieldPaths lists the YAML paths of every Config field, for the
// completeness check of the field table test.
func ConfigFieldPaths() []string {
	var out []string
	for _, f := range configFields() {
		out = append(out, f.path)
	}
	return out
}
