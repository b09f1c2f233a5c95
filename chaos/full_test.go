//go:build chaos

package chaos_test

// The chaos build tag selects the full runs (see loadConfig).
func init() { fullRun = true }
