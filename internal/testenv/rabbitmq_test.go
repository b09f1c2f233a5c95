package testenv

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStartRabbitMQKillRestart starts a private node, asks it for its
// status, kills and restarts it, stops it, and checks that
// no process of the node is left.
func TestStartRabbitMQKillRestart(t *testing.T) {
	s := StartRabbitMQ(t)
	if err := amqpAnswers(s.Addr(), time.Second); err != nil {
		t.Fatalf("node on %s: %v", s.Addr(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := s.Ctl(ctx, "status"); err != nil {
		t.Fatalf("rabbitmqctl status: %v\n%s", err, out)
	}
	s.Kill()
	if err := amqpAnswers(s.Addr(), time.Second); err == nil {
		t.Fatal("the node answered AMQP after Kill")
	}
	s.Restart()
	if err := amqpAnswers(s.Addr(), time.Second); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	s.Stop()
	out, _ := exec.Command("ps", "-eo", "pid,args").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, s.Node()) || strings.Contains(line, s.Dir()) {
			t.Errorf("a process of the stopped node is left: %s", line)
		}
	}
}

func TestRabbitMQURL(t *testing.T) {
	u := RabbitMQURL(t)
	if !strings.HasPrefix(u, "amqp") {
		t.Fatalf("RabbitMQURL = %q", u)
	}
}
