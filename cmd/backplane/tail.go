package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
)

type tailOptions struct {
	ns         string
	json       bool
	heartbeats bool
	count      int
	duration   time.Duration
	replay     bool
}

func newTailCmd(g *globals) *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail URL",
		Short: "Print every message on a namespace as it arrives",
		Long: `tail subscribes to a namespace and prints each message: receive time, source
instance, sequence number, operation, keys and lag (receive time minus the
sender's publish time; across hosts it includes their clock difference).
Heartbeats are hidden unless --heartbeats. A payload that does not decode is
printed as such (with its first bytes in hex), never a crash. With
--signing-key, each message's signature is checked and the verdict shown.

With --replay, over a durable mode (Redis Streams, ?mode=stream; JetStream,
?jetstream=true), tail first prints what the log still holds, oldest first,
then follows it: what the fleet invalidated over the retention.

tail only listens: it publishes nothing and changes no cache. Ctrl-C stops it
(exit code 0).`,
		Example: `  backplane tail nats://127.0.0.1:4222 --namespace catalog
  backplane tail redis://127.0.0.1:6379 -n catalog --json | jq .keys
  backplane tail nats://127.0.0.1:4222 -n catalog --heartbeats --count 10
  backplane tail 'redis://127.0.0.1:6379?mode=stream' -n catalog --replay --for 1s`,
		Args: urlArg(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTail(cmd.Context(), g, args[0], o)
		},
	}
	addNamespaceFlag(cmd, &o.ns)
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON object per line")
	cmd.Flags().BoolVar(&o.heartbeats, "heartbeats", false, "show heartbeat messages too")
	cmd.Flags().IntVar(&o.count, "count", 0, "exit after printing this many messages (0: no limit)")
	cmd.Flags().DurationVar(&o.duration, "for", 0, "exit after this long (0: until Ctrl-C)")
	cmd.Flags().BoolVar(&o.replay, "replay", false, "over a durable mode, print the retained log first")
	return cmd
}

type tailItem struct {
	at      time.Time
	payload []byte
	event   *core.Event
}

func runTail(ctx context.Context, g *globals, rawURL string, o tailOptions) error {
	if err := requireNamespace(rawURL, o.ns); err != nil {
		return err
	}
	if o.count < 0 || o.duration < 0 {
		return usagef("--count and --for must not be negative")
	}
	if o.replay {
		u, err := url.Parse(rawURL)
		if err != nil {
			return usagef("malformed URL")
		}
		q := u.Query()
		if q.Get("mode") != "stream" && q.Get("jetstream") != "true" {
			return usagef("--replay needs a durable mode: redis://...?mode=stream or nats://...?jetstream=true")
		}
		q.Set("replay", "true")
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	bp, err := g.openBackplane(ctx, rawURL, o.ns)
	if err != nil {
		return err
	}
	defer bp.Close()

	items := make(chan tailItem, 8192)
	var dropped atomic.Uint64
	h := core.HandlerFuncs{
		Message: func(p []byte) {
			select {
			case items <- tailItem{at: time.Now(), payload: append([]byte(nil), p...)}:
			default:
				dropped.Add(1)
			}
		},
		Event: func(ev core.Event) {
			select {
			case items <- tailItem{at: time.Now(), event: &ev}:
			default:
			}
		},
	}
	if err := g.subscribe(ctx, rawURL, bp, h); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "tailing namespace %q on %s (Ctrl-C to stop)\n", nsOf(rawURL, o.ns), redact(rawURL))

	var stop <-chan time.Time
	if o.duration > 0 {
		t := time.NewTimer(o.duration)
		defer t.Stop()
		stop = t.C
	}
	printed := 0
	enc := json.NewEncoder(g.stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case it := <-items:
			if it.event != nil {
				if it.event.Kind != core.EventConnected {
					msg := fmt.Sprintf("%s  connection %s", it.at.Format("15:04:05.000"), it.event.Kind)
					if it.event.Err != nil {
						msg += ": " + it.event.Err.Error()
					}
					fmt.Fprintln(g.stderr, msg)
				}
				continue
			}
			env, derr := core.DecodeEnvelope(it.payload)
			if derr == nil && env.Op == core.OpHeartbeat && !o.heartbeats {
				continue
			}
			verdict := ""
			if derr == nil && g.keyring != nil {
				verdict = "verified"
				if err := g.keyring.Verify(it.payload, &env); err != nil {
					verdict = "REJECTED: " + strings.TrimPrefix(err.Error(), "backplane: ")
				}
			}
			if o.json {
				r := tailJSON(it, env, derr)
				r.Signature = verdict
				_ = enc.Encode(r)
			} else {
				line := tailLine(it, env, derr)
				if verdict != "" {
					line += "  [" + verdict + "]"
				}
				fmt.Fprintln(g.stdout, line)
			}
			if n := dropped.Swap(0); n > 0 {
				fmt.Fprintf(g.stderr, "%d messages not shown: the output was too slow\n", n)
			}
			printed++
			if o.count > 0 && printed >= o.count {
				return nil
			}
		}
	}
}

// nsOf returns the namespace in effect: the URL's parameter wins.
func nsOf(rawURL, ns string) string {
	if i := strings.Index(rawURL, "namespace="); i >= 0 {
		v := rawURL[i+len("namespace="):]
		if j := strings.IndexByte(v, '&'); j >= 0 {
			v = v[:j]
		}
		return v
	}
	return ns
}

func preview(p []byte) string {
	const n = 32
	if len(p) > n {
		return hex.EncodeToString(p[:n]) + "…"
	}
	return hex.EncodeToString(p)
}

func tailLine(it tailItem, env core.Envelope, derr error) string {
	ts := it.at.Format("15:04:05.000")
	if derr != nil {
		return fmt.Sprintf("%s  UNDECODABLE  %d bytes (%v): %s", ts, len(it.payload), strings.TrimPrefix(derr.Error(), "backplane: "), preview(it.payload))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  seq %-6d %-10s lag %-8s", ts, env.Source.String()[:8], env.Seq, env.Op, fmtDur(it.at.Sub(env.Sent), !env.Sent.IsZero()))
	if env.KeyID != "" {
		fmt.Fprintf(&b, " signed(%s)", env.KeyID)
	}
	if len(env.Keys) > 0 {
		what := "keys"
		if env.Op == core.OpInvalidateTags {
			what = "tags"
		}
		fmt.Fprintf(&b, " %s %s", what, strings.Join(env.Keys, " "))
	}
	return strings.TrimRight(b.String(), " ")
}

type tailRecord struct {
	Time       time.Time  `json:"time"`
	Source     string     `json:"source,omitempty"`
	Seq        uint64     `json:"seq,omitempty"`
	Op         string     `json:"op,omitempty"`
	Keys       []string   `json:"keys,omitempty"`
	Sent       *time.Time `json:"sent,omitempty"`
	LagMicros  *int64     `json:"lag_us,omitempty"`
	KeyID      string     `json:"key_id,omitempty"`
	Signature  string     `json:"signature,omitempty"`
	Error      string     `json:"error,omitempty"`
	Bytes      int        `json:"bytes"`
	PayloadHex string     `json:"payload_hex,omitempty"`
}

func tailJSON(it tailItem, env core.Envelope, derr error) tailRecord {
	r := tailRecord{Time: it.at, Bytes: len(it.payload)}
	if derr != nil {
		r.Error = derr.Error()
		r.PayloadHex = preview(it.payload)
		return r
	}
	r.Source, r.Seq, r.Op, r.Keys, r.KeyID = env.Source.String(), env.Seq, env.Op.String(), env.Keys, env.KeyID
	if !env.Sent.IsZero() {
		sent := env.Sent
		lag := it.at.Sub(sent).Microseconds()
		r.Sent, r.LagMicros = &sent, &lag
	}
	return r
}
