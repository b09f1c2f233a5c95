package redistransport

import (
	"errors"
	"net/url"
	"strconv"
	"time"
)

// Stream mode defaults.
const (
	// DefaultStreamMaxLen bounds a namespace's stream to about this many
	// entries (XADD MAXLEN ~).
	DefaultStreamMaxLen = 100_000
	// DefaultStreamRetention trims entries older than this (MINID ~): the
	// longest a subscriber may stay cut off and still resume.
	DefaultStreamRetention = 10 * time.Minute
	// DefaultStreamCheckInterval is how often a connected subscriber
	// compares its position with the stream's counters (XINFO STREAM) to
	// notice entries trimmed before it read them.
	DefaultStreamCheckInterval = time.Second
)

// StreamOptions configure the stream mode (Options.Stream): a namespace's
// messages are the entries of one Redis stream, which every subscriber
// reads from its own position. The zero value of a field means its default;
// a negative MaxLen or Retention turns that bound off (one must stay on).
type StreamOptions struct {
	// Enabled carries messages on a stream instead of pub/sub.
	Enabled bool
	// MaxLen bounds the stream's length, approximately (XADD MAXLEN ~).
	// Default DefaultStreamMaxLen.
	MaxLen int64
	// Retention trims entries older than this, approximately (MINID ~,
	// by the publisher's clock against the server's entry IDs). Default
	// DefaultStreamRetention.
	Retention time.Duration
	// CheckInterval is how often a connected subscriber verifies that no
	// entry it had not read yet was trimmed. Default
	// DefaultStreamCheckInterval.
	CheckInterval time.Duration
	// Replay places a new subscriber at the oldest entry the stream still
	// holds instead of its end: Subscribe delivers the retained log first.
	// It is for tools that inspect the log (backplane tail --replay); an
	// engine gains nothing from re-applying old invalidations.
	Replay bool
}

func (s *StreamOptions) fill() error {
	if !s.Enabled {
		return nil
	}
	if s.MaxLen == 0 {
		s.MaxLen = DefaultStreamMaxLen
	}
	if s.Retention == 0 {
		s.Retention = DefaultStreamRetention
	}
	if s.CheckInterval == 0 {
		s.CheckInterval = DefaultStreamCheckInterval
	}
	switch {
	case s.MaxLen < 0 && s.Retention < 0:
		return invalid("stream mode needs MaxLen or Retention: an unbounded stream grows without end")
	case s.Retention > 0 && s.Retention < time.Millisecond:
		return invalid("stream Retention %v is below a millisecond", s.Retention)
	case s.CheckInterval < 0:
		return invalid("negative stream CheckInterval %v", s.CheckInterval)
	}
	return nil
}

// WithStream carries messages on a Redis stream (see StreamOptions and the
// package documentation); s.Enabled is set.
func WithStream(s StreamOptions) Option {
	return func(o *Options) {
		s.Enabled = true
		o.Stream = s
	}
}

// urlOptions takes the transport's own query parameters out of rawURL
// (mode, maxlen, retention, replay) and returns the URL without them and the
// Options they set.
func urlOptions(rawURL string) (string, []Option, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", nil, invalid("bad URL: %v", err)
	}
	q := u.Query()
	var opts []Option
	take := func(name string) (string, bool) {
		v, ok := q.Get(name), q.Has(name)
		q.Del(name)
		return v, ok
	}
	mode, hasMode := take("mode")
	maxLen, hasMaxLen := take("maxlen")
	retention, hasRetention := take("retention")
	replay, hasReplay := take("replay")
	switch mode {
	case "stream":
		opts = append(opts, func(o *Options) { o.Stream.Enabled = true })
	case "", "pubsub":
		if hasMaxLen || hasRetention || hasReplay {
			return "", nil, invalid("URL parameters maxlen, retention and replay need mode=stream")
		}
	default:
		return "", nil, invalid("URL mode %q is not pubsub or stream", mode)
	}
	if hasMaxLen {
		n, err := strconv.ParseInt(maxLen, 10, 64)
		if err != nil {
			return "", nil, invalid("bad maxlen parameter %q", maxLen)
		}
		opts = append(opts, func(o *Options) { o.Stream.MaxLen = n })
	}
	if hasRetention {
		d, err := time.ParseDuration(retention)
		if err != nil {
			return "", nil, invalid("bad retention parameter %q", retention)
		}
		opts = append(opts, func(o *Options) { o.Stream.Retention = d })
	}
	if hasReplay {
		b, err := strconv.ParseBool(replay)
		if err != nil {
			return "", nil, invalid("bad replay parameter %q (true or false)", replay)
		}
		opts = append(opts, func(o *Options) { o.Stream.Replay = b })
	}
	if !hasMode && !hasMaxLen && !hasRetention && !hasReplay {
		return rawURL, nil, nil
	}
	u.RawQuery = q.Encode()
	return u.String(), opts, nil
}
