// The options of the JetStream mode and their URL parameters.

package natstransport

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/backplane-go/backplane/internal/transportopt"
)

// Storage is where the stream of the JetStream mode keeps its messages.
type Storage string

// Storage kinds.
const (
	// StorageFile keeps the stream on the server's disk: it survives a
	// restart of the server, and subscribers resume where they stopped.
	StorageFile Storage = "file"
	// StorageMemory keeps the stream in the server's memory: cheaper per
	// message, but a restart of the server loses the stream, which
	// subscribers report as a loss.
	StorageMemory Storage = "memory"
)

// JetStreamOptions configure the JetStream mode: one stream per namespace
// that keeps every message for the retention, read by every Transport with
// an ordered consumer (see the package documentation). The zero value is
// core NATS pub/sub.
//
// The stream is created by the first Transport that needs it, with these
// settings; a Transport that finds the stream already there uses it as it
// is, whatever its settings.
type JetStreamOptions struct {
	// Enabled selects the JetStream mode.
	Enabled bool
	// Storage is StorageFile (the default) or StorageMemory.
	Storage Storage
	// Replicas is the number of servers of a JetStream cluster that keep
	// the stream (1 to 5). Default 1.
	Replicas int
	// MaxAge is how long the stream keeps a message: the longest outage
	// (of a subscriber's connection, or of the server with StorageFile)
	// that subscribers resume from without a loss. Zero means no limit by
	// age; when MaxAge, MaxMsgs and MaxBytes are all zero, MaxAge is
	// DefaultRetention.
	MaxAge time.Duration
	// MaxMsgs bounds the number of messages the stream keeps (the oldest
	// go first). Zero means no limit by count.
	MaxMsgs int64
	// MaxBytes bounds the size of the stream (the oldest messages go
	// first). Zero means no limit by size.
	MaxBytes int64
	// Replay starts a new subscriber at the oldest message the stream
	// still holds instead of its end: Subscribe delivers the retained log
	// first. It is for tools that inspect the log (backplane tail
	// --replay); an engine gains nothing from re-applying old
	// invalidations.
	Replay bool
}

func (j *JetStreamOptions) fill() {
	if !j.Enabled {
		return
	}
	transportopt.Fill(&j.Storage, StorageFile)
	transportopt.Fill(&j.Replicas, 1)
	if j.MaxAge == 0 && j.MaxMsgs == 0 && j.MaxBytes == 0 {
		j.MaxAge = DefaultRetention
	}
}

func (j *JetStreamOptions) validate() error {
	const pkg = "natstransport"
	if !j.Enabled {
		if *j != (JetStreamOptions{}) {
			return transportopt.Invalid(pkg, "JetStream settings without JetStream.Enabled")
		}
		return nil
	}
	err := transportopt.First(
		transportopt.NonNegative(pkg, "JetStream.MaxAge", j.MaxAge),
		transportopt.NonNegative(pkg, "JetStream.MaxMsgs", j.MaxMsgs),
		transportopt.NonNegative(pkg, "JetStream.MaxBytes", j.MaxBytes),
	)
	switch {
	case err != nil:
		return err
	case j.Storage != StorageFile && j.Storage != StorageMemory:
		return transportopt.Invalid(pkg, "JetStream.Storage %q: want %q or %q", j.Storage, StorageFile, StorageMemory)
	case j.Replicas < 1 || j.Replicas > 5:
		return transportopt.Invalid(pkg, "JetStream.Replicas %d: want 1 to 5", j.Replicas)
	}
	return nil
}

// jetStreamParams are the URL query parameters of the JetStream mode.
var jetStreamParams = []string{"jetstream", "storage", "replicas", "retention", "max_msgs", "max_bytes", "replay"}

// JetStreamURLParams returns the names of the URL query parameters that
// JetStreamURLOptions reads.
func JetStreamURLParams() []string { return slices.Clone(jetStreamParams) }

// JetStreamURLOptions reads the JetStream mode from URL query parameters
// and returns it as options (none when q has none of them):
//
//	jetstream=true     the JetStream mode (false or absent: core NATS)
//	storage=file       StorageFile (default) or memory
//	replicas=1         JetStreamOptions.Replicas
//	retention=10m      JetStreamOptions.MaxAge (a Go duration)
//	max_msgs=100000    JetStreamOptions.MaxMsgs
//	max_bytes=67108864 JetStreamOptions.MaxBytes
//	replay=true        JetStreamOptions.Replay (tools)
//
// Parameters other than these are ignored. Open reads the same parameters
// from its server URLs.
func JetStreamURLOptions(q url.Values) ([]Option, error) {
	var js JetStreamOptions
	var bad []string
	seen := false
	for _, name := range jetStreamParams {
		vs, ok := q[name]
		if !ok {
			continue
		}
		seen = true
		v := ""
		if len(vs) > 0 {
			v = vs[len(vs)-1]
		}
		var err error
		switch name {
		case "jetstream":
			js.Enabled, err = strconv.ParseBool(v)
		case "storage":
			js.Storage = Storage(strings.ToLower(v))
		case "replicas":
			js.Replicas, err = strconv.Atoi(v)
		case "retention":
			js.MaxAge, err = time.ParseDuration(v)
		case "max_msgs":
			js.MaxMsgs, err = strconv.ParseInt(v, 10, 64)
		case "max_bytes":
			js.MaxBytes, err = strconv.ParseInt(v, 10, 64)
		case "replay":
			js.Replay, err = strconv.ParseBool(v)
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s=%q", name, v))
		}
	}
	if len(bad) > 0 {
		return nil, transportopt.Invalid("natstransport", "URL parameters %s", strings.Join(bad, ", "))
	}
	if !seen {
		return nil, nil
	}
	if !js.Enabled {
		if js != (JetStreamOptions{}) {
			return nil, transportopt.Invalid("natstransport", "JetStream URL parameters without jetstream=true")
		}
		return nil, nil
	}
	return []Option{WithJetStream(js)}, nil
}

// splitURLParams takes the query parameters off the server URLs of Open:
// it returns the URLs without them and the options they give. A parameter
// that is not a JetStream one is an error.
func splitURLParams(servers string) (string, []Option, error) {
	var out []string
	q := url.Values{}
	for s := range strings.SplitSeq(servers, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil || u.RawQuery == "" {
			out = append(out, s)
			continue
		}
		for k, vs := range u.Query() {
			if !slices.Contains(jetStreamParams, k) {
				return "", nil, transportopt.Invalid("natstransport", "server URL %s: unknown parameter %q (known: %s)",
					redactURL(u), k, strings.Join(jetStreamParams, ", "))
			}
			q[k] = append(q[k], vs...)
		}
		u.RawQuery = ""
		out = append(out, u.String())
	}
	opts, err := JetStreamURLOptions(q)
	if err != nil {
		return "", nil, err
	}
	return strings.Join(out, ","), opts, nil
}
