package fxmodule_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/internal/testenv"
)

// startErr builds and starts an fx application with the Module and returns
// the error of its construction or start.
func startErr(t *testing.T, opts ...fx.Option) error {
	t.Helper()
	app := fx.New(append(opts, fxmodule.Module, fx.NopLogger, fx.Invoke(func(*core.Cache) {}))...)
	if err := app.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		return err
	}
	_ = app.Stop(ctx)
	return nil
}

// A missing or misspelt setting fails the start with an error that names
// the setting where it was read from; no transport is chosen for the user.
func TestSettingsErrorsName(t *testing.T) {
	yamlNoURL := writeFile(t, "backplane.yaml", "namespace: orders\n")
	yamlNoNS := writeFile(t, "nons.yaml", "transport_url: mem://\n")
	code := fxmodule.DefaultConfig()
	code.Namespace = "orders"
	tests := []struct {
		name string
		env  map[string]string
		opt  fx.Option
		want []string
	}{
		{"env without transport", map[string]string{"BACKPLANE_NAMESPACE": "orders"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"BACKPLANE_TRANSPORT_URL", "not set", "nats://"}},
		{"env typo", map[string]string{"BACKPLANE_NAMESPACE": "orders", "BACKPLANE_TRANSPORTURL": "nats://127.0.0.1:4222"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"unknown variable BACKPLANE_TRANSPORTURL", "did you mean BACKPLANE_TRANSPORT_URL?", "valid:", "BACKPLANE_TTL"}},
		{"env old name", map[string]string{"BACKPLANE_NAMESPACE": "orders", "BACKPLANE_TRANSPORT": "nats://127.0.0.1:4222"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"unknown variable BACKPLANE_TRANSPORT", "did you mean BACKPLANE_TRANSPORT_URL?"}},
		{"env other prefix", map[string]string{"APP_NAMESPACE": "orders"},
			fxmodule.ConfigFromEnv("APP_"), []string{"APP_TRANSPORT_URL", "not set"}},
		{"env without namespace", map[string]string{"BACKPLANE_TRANSPORT_URL": "mem://"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"BACKPLANE_NAMESPACE", "not set"}},
		{"env bad ttl", map[string]string{"BACKPLANE_TRANSPORT_URL": "mem://", "BACKPLANE_NAMESPACE": "orders", "BACKPLANE_TTL": "-1s"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"BACKPLANE_TTL", "negative"}},
		{"env every invalid field", map[string]string{"BACKPLANE_TRANSPORT_URL": "mem://", "BACKPLANE_TTL": "-1s", "BACKPLANE_QUEUE_SIZE": "0"},
			fxmodule.ConfigFromEnv("BACKPLANE_"), []string{"BACKPLANE_NAMESPACE", "BACKPLANE_TTL", "BACKPLANE_QUEUE_SIZE"}},
		{"yaml without transport", nil, fxmodule.ConfigFromYAML(yamlNoURL), []string{"transport_url in " + yamlNoURL, "not set"}},
		{"yaml without namespace", nil, fxmodule.ConfigFromYAML(yamlNoNS), []string{"namespace in " + yamlNoNS, "not set"}},
		{"code without transport", nil, fx.Supply(code), []string{"transport_url (Config.TransportURL", "BACKPLANE_TRANSPORT_URL", "not set"}},
		{"scheme not imported", nil, fx.Supply(withURL(code, "kafka://k:9092")), []string{`"kafka"`, "registered:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := startErr(t, tt.opt)
			if err == nil {
				t.Fatal("the application started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func withURL(c fxmodule.Config, url string) fxmodule.Config {
	c.TransportURL = url
	return c
}

// The variables of this module's tests and tools are not reported.
func TestApplyEnvToolVariables(t *testing.T) {
	c := fxmodule.DefaultConfig()
	env := []string{"BACKPLANE_REDIS_URL=redis://x", "BACKPLANE_REQUIRE_SERVICES=1", "BACKPLANE_STORE_PARAMS_REGION=eu"}
	if err := c.ApplyEnv("", env); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv("APP_", []string{"APP_REDIS_URL=x"}); err == nil || !strings.Contains(err.Error(), "APP_REDIS_URL") {
		t.Fatalf("APP_REDIS_URL: %v, want an unknown variable", err)
	}
}

// A max_payload above the transport's limit is an error whatever the
// source of the configuration: the URL, the environment, YAML or code.
func TestMaxPayloadAboveLimit(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	yamlFile := writeFile(t, "big.yaml", "namespace: big\ntransport_url: "+redisURL+"\nmax_payload: 2000000\n")
	code := fxmodule.DefaultConfig()
	code.Namespace, code.TransportURL, code.MaxPayload = "big", "mem://big?max_payload=100000", 200000
	tests := []struct {
		name string
		env  map[string]string
		opt  fx.Option
		want []string
	}{
		{"url", nil, fx.Supply(withURL(code, redisURL+"?max_payload=600000000")), []string{"MaxPayload 600000000", "outside"}},
		{"env", map[string]string{"BACKPLANE_TRANSPORT_URL": redisURL, "BACKPLANE_NAMESPACE": "big", "BACKPLANE_MAX_PAYLOAD": "2000000"},
			fxmodule.ConfigFromEnv(""), []string{"max_payload 2000000", "limit 1048576"}},
		{"yaml", nil, fxmodule.ConfigFromYAML(yamlFile), []string{"max_payload 2000000", "limit 1048576"}},
		{"code", nil, fx.Supply(code), []string{"max_payload 200000", "limit 100000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := startErr(t, tt.opt)
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("start = %v, want ErrInvalidOption", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// fxmodule links no transport SDK: the transport packages register their
// schemes themselves, and an application links those it imports.
func TestLinksNoTransportSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("go list in -short mode")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		for _, p := range []string{"github.com/Azure/", "github.com/redis/", "github.com/nats-io/", "github.com/jackc/", "github.com/rabbitmq/",
			"github.com/backplane-go/backplane/transports/natstransport",
			"github.com/backplane-go/backplane/transports/pgtransport",
			"github.com/backplane-go/backplane/transports/rabbitmqtransport",
			"github.com/backplane-go/backplane/transports/redistransport",
			"github.com/backplane-go/backplane/transports/servicebustransport"} {
			if strings.HasPrefix(d, p) {
				t.Errorf("fxmodule links %s", d)
			}
		}
	}
}

// An application over Redis only (fxmodule and redistransport) links
// none of the other transports' SDKs (pgx, amqp091-go, ...).
func TestRedisAppLinksNoOtherSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("go list in -short mode")
	}
	out, err := exec.Command("go", "list", "-deps", ".", "../transports/redistransport").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/redis/go-redis/v9") {
		t.Fatalf("go list -deps of fxmodule and redistransport lacks go-redis:\n%s", out)
	}
	for _, d := range deps {
		for _, p := range []string{"github.com/jackc/", "github.com/Azure/", "github.com/nats-io/", "github.com/rabbitmq/",
			"github.com/backplane-go/backplane/transports/pgtransport",
			"github.com/backplane-go/backplane/transports/natstransport",
			"github.com/backplane-go/backplane/transports/rabbitmqtransport",
			"github.com/backplane-go/backplane/transports/servicebustransport"} {
			if strings.HasPrefix(d, p) {
				t.Errorf("an application over Redis links %s", d)
			}
		}
	}
}
