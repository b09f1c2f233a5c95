package fxmodule_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/fx"

	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// Two apps share invalidations over RabbitMQ, one through an amqp:// URL,
// the other over an *amqp091.Connection of its graph, which its stop
// leaves open.
func TestRabbitMQApps(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // after the apps stopped and the exchange went
	ns := namespace(t)
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(rabbitmqtransport.DefaultExchangePrefix+ns, false, false)
		}
	})
	a := newApp(t, fx.Supply(config(t, url+"?heartbeat=2s&queue_max_length=1000", ns)))
	b := newApp(t, fx.Supply(conn), fxmodule.UseClient[*amqp.Connection](), fx.Supply(config(t, "amqp://unused.invalid:1/", ns)))
	start(t, a)
	start(t, b)
	shareInvalidations(t, a, b)
	b.RequireStop()
	if conn.IsClosed() {
		t.Fatal("the graph's connection was closed")
	}
}
