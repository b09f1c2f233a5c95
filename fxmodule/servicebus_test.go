package fxmodule_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/fx"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/internal/testenv/sbfake"
)

// Two apps share invalidations over Service Bus (the in-process fake driven
// by the real SDK), each on its own pre-provisioned subscription.
func TestServiceBusApps(t *testing.T) {
	srv, err := sbfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ns := namespace(t)
	srv.AddTopic("backplane."+ns, "instance-a", "instance-b")
	url := func(sub string) string {
		return "sb://" + srv.Addr() + "?key_name=fake&key=fake&emulator=true&provision=none&subscription=" + sub
	}
	a := newApp(t, fx.Supply(config(t, url("instance-a"), ns)))
	b := newApp(t, fx.Supply(config(t, url("instance-b"), ns)))
	start(t, a)
	start(t, b)
	shareInvalidations(t, a, b)
}

func TestServiceBusURLErrors(t *testing.T) {
	for _, tt := range []struct {
		url  string
		is   error
		want string
	}{
		{"sb://host?key_name=k", core.ErrInvalidOption, "key_name and key"},
		{"sb://?key_name=k&key=s&subscription=x", core.ErrInvalidOption, "no host"},
		{"sb://host?key_name=k&key=s&queue=x", fxmodule.ErrUnknownParameter, "subscription"},
		{"servicebus://host?key_name=k&key=s&provision=none", core.ErrInvalidOption, "provision=none needs subscription"},
		{"sb://host?key_name=k&key=s&provision=magic", core.ErrInvalidOption, "admin or none"},
		{"sb://host?key_name=k&key=s&peek_lock=perhaps&subscription=x", core.ErrInvalidOption, "peek_lock"},
	} {
		bp, err := fxmodule.OpenBackplane(context.Background(), tt.url, "ns")
		if err == nil {
			_ = bp.Close()
			t.Errorf("%s: no error", tt.url)
			continue
		}
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want %v mentioning %q", tt.url, err, tt.is, tt.want)
		}
	}
	// The shared access key never appears in errors.
	_, err := fxmodule.OpenBackplane(context.Background(), "sb://host?key_name=k&key=s3cr3t-key&provision=magic", "ns")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-key") {
		t.Fatalf("error %v leaks the key or is nil", err)
	}
	// Without a subscription the admin provisioner is used; nothing is
	// dialled until Subscribe.
	bp, err := fxmodule.OpenBackplane(context.Background(), "sb://example.servicebus.windows.net?key_name=k&key=s", "ns")
	if err != nil {
		t.Fatal(err)
	}
	_ = bp.Close()
}
