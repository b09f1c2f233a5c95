package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RabbitMQURLEnv names the environment variable that points tests at a
// shared RabbitMQ broker (for example amqp://guest:guest@127.0.0.1:5672/).
const RabbitMQURLEnv = "BACKPLANE_RABBITMQ_URL"

// DefaultRabbitMQURL is where RabbitMQURL looks when RabbitMQURLEnv is not
// set.
const DefaultRabbitMQURL = "amqp://guest:guest@127.0.0.1:5672/"

// rabbitStartTimeout bounds how long a private node may take to answer
// AMQP after it was started (an Erlang VM boots in seconds, more on a
// loaded machine).
const rabbitStartTimeout = 90 * time.Second

// ErrNoRabbitMQ is returned by LaunchRabbitMQ when no rabbitmq-server is
// installed.
var ErrNoRabbitMQ = errors.New("testenv: rabbitmq-server not installed")

// RabbitMQURL returns the URL of a shared RabbitMQ broker for tests that
// need one but never fault it: BACKPLANE_RABBITMQ_URL when set, else
// DefaultRabbitMQURL when it answers AMQP. Otherwise it calls Unavailable.
// Tests must not restart the shared broker or close connections other
// than their own.
func RabbitMQURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(RabbitMQURLEnv); u != "" {
		return u
	}
	u, _ := url.Parse(DefaultRabbitMQURL)
	if err := amqpAnswers(u.Host, 2*time.Second); err != nil {
		Unavailable(t, "no RabbitMQ broker: %s is not set and %s does not answer AMQP: %v", RabbitMQURLEnv, u.Host, err)
	}
	return DefaultRabbitMQURL
}

// amqpAnswers sends the AMQP 0-9-1 protocol header to addr and reports
// whether a connection.start method frame comes back: a broker whose boot
// has finished (RabbitMQ opens its listeners last).
func amqpAnswers(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	var frame [1]byte
	if _, err := io.ReadFull(c, frame[:]); err != nil {
		return fmt.Errorf("no AMQP reply: %w", err)
	}
	if frame[0] != 1 {
		return fmt.Errorf("not an AMQP 0-9-1 broker (first byte %#x)", frame[0])
	}
	return nil
}

// rabbitBin finds a RabbitMQ script. The Debian wrapper in /usr/sbin
// switches to the rabbitmq user when run as root, which would not read a
// private node's files: the scripts it wraps are preferred.
func rabbitBin(name string) (string, error) {
	for _, dir := range []string{"/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (%v); install the rabbitmq-server package", ErrNoRabbitMQ, name, err)
	}
	return p, nil
}

// RabbitMQServer is a private RabbitMQ node (rabbitmq-server, no plugins)
// with its own node name, AMQP and distribution ports on 127.0.0.1, data,
// log and configuration directories and Erlang cookie. It keeps its ports
// across Restart. Its methods are safe for concurrent use.
//
// The node registers its name with the machine's epmd (the Erlang port
// mapper on 4369, which a shared RabbitMQ already runs); when none runs,
// the node starts one, bound to 127.0.0.1, that stays after the node
// stopped, as epmd does.
type RabbitMQServer struct {
	t        testing.TB // the owning test of StartRabbitMQ; nil for LaunchRabbitMQ
	bin, ctl string
	dir      string
	node     string
	port     int
	distPort int
	env      []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	out     *bytes.Buffer
	stopped bool
}

// StartRabbitMQ starts a private node for t, stopped (and its files
// removed) when t ends. It calls Unavailable when RabbitMQ is not installed
// and fails t when the node does not start.
func StartRabbitMQ(t testing.TB) *RabbitMQServer {
	t.Helper()
	s, err := LaunchRabbitMQ()
	if errors.Is(err, ErrNoRabbitMQ) {
		Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// LaunchRabbitMQ starts a private node that the caller stops with Stop:
// for a node shared by the tests of one binary, started once and stopped
// in TestMain. It returns ErrNoRabbitMQ when RabbitMQ is not installed.
// The node is killed if the test binary dies.
func LaunchRabbitMQ() (*RabbitMQServer, error) {
	bin, err := rabbitBin("rabbitmq-server")
	if err != nil {
		return nil, err
	}
	ctl, err := rabbitBin("rabbitmqctl")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := newRabbitMQ(bin, ctl)
		if err != nil {
			return nil, err
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
		s.Stop()
	}
	return nil, fmt.Errorf("testenv: rabbitmq-server did not start: %w", lastErr)
}

func newRabbitMQ(bin, ctl string) (*RabbitMQServer, error) {
	dir, err := os.MkdirTemp("", "backplane-rabbitmq-")
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	port, distPort, err := twoFreePorts()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &RabbitMQServer{bin: bin, ctl: ctl, dir: dir, port: port, distPort: distPort,
		node: fmt.Sprintf("backplane-%d@localhost", port)}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n"+
		"disk_free_limit.absolute = 1MB\n"+
		"log.console = false\n", port)
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"enabled_plugins":   "",
		"rabbitmq-env.conf": "",
	}
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("testenv: %w", err)
		}
	}
	env := []string{
		// The Erlang cookie is made in and read from HOME.
		"HOME=" + filepath.Join(dir, "home"),
		"RABBITMQ_NODENAME=" + s.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "pid"),
		// Run the VM in place of the script (so that a kill reaches it),
		// without a shell on stdin, its distribution on loopback only.
		"RABBITMQ_ALLOW_INPUT=1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput -kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "LANG" || k == "LC_ALL" || k == "TMPDIR" {
			env = append(env, kv)
		}
	}
	s.env = env
	return s, nil
}

// twoFreePorts returns two distinct ports that were free a moment ago.
func twoFreePorts() (int, int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for len(ports) < 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("testenv: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

// start runs the node and waits until it answers AMQP.
func (s *RabbitMQServer) start() error {
	cmd := exec.Command(s.bin)
	cmd.Dir = s.dir
	cmd.Env = s.env
	out := &bytes.Buffer{}
	cmd.Stdout = &syncWriter{w: out, mu: &s.mu}
	cmd.Stderr = cmd.Stdout
	setGroupProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()
	deadline := time.Now().Add(rabbitStartTimeout)
	for {
		err := amqpAnswers(s.Addr(), time.Second)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("rabbitmq-server node %s exited: %s%s", s.node, s.output(), s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("rabbitmq-server node %s did not answer AMQP on %s within %v: %v%s", s.node, s.Addr(), rabbitStartTimeout, err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncWriter writes under a mutex, so that output can be read meanwhile.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (s *RabbitMQServer) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

func (s *RabbitMQServer) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "log", s.node+".log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return "\nnode log tail:\n" + string(b)
}

// Addr returns host:port of the AMQP listener.
func (s *RabbitMQServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the AMQP port.
func (s *RabbitMQServer) Port() int { return s.port }

// Node returns the Erlang node name (backplane-PORT@localhost).
func (s *RabbitMQServer) Node() string { return s.node }

// Dir returns the node's directory (data, logs, configuration).
func (s *RabbitMQServer) Dir() string { return s.dir }

// URL returns amqp://guest:guest@127.0.0.1:port/ (guest may log in from
// loopback).
func (s *RabbitMQServer) URL() string { return "amqp://guest:guest@" + s.Addr() + "/" }

// Kill stops the node with SIGKILL (its whole process group) and waits
// until it is gone. Killing a stopped node does nothing.
func (s *RabbitMQServer) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	killGroup(cmd)
	<-exited
}

// Restart kills the node if it runs and starts it again on the same ports
// and data directory, returning once it answers AMQP. Transient exchanges
// and queues, and every connection, are gone. A failure fails the test
// that started the node (StartRabbitMQ); a node from LaunchRabbitMQ has no
// test, and panics: use TryRestart there.
func (s *RabbitMQServer) Restart() {
	if err := s.TryRestart(); err != nil {
		if s.t == nil {
			panic(err)
		}
		s.t.Helper()
		s.t.Fatalf("%v", err)
	}
}

// TryRestart is Restart returning its error.
func (s *RabbitMQServer) TryRestart() error {
	s.Kill()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errors.New("testenv: restart of a stopped RabbitMQ node")
	}
	// epmd may take a moment to forget the killed node's name.
	deadline := time.Now().Add(rabbitStartTimeout)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: restart RabbitMQ node %s: %w", s.node, err)
		}
		s.Kill()
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop kills the node for good and removes its files. It is idempotent.
func (s *RabbitMQServer) Stop() {
	s.mu.Lock()
	already := s.stopped
	s.stopped = true
	s.mu.Unlock()
	s.Kill()
	if !already {
		_ = os.RemoveAll(s.dir)
	}
}

// Ctl runs rabbitmqctl against the node (rabbitmqctl -n NODE args...) and
// returns its standard output.
func (s *RabbitMQServer) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.ctl, append([]string{"-q", "-n", s.node}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CloseConnections closes, from the broker's side (rabbitmqctl
// close_connection), every connection whose client-provided
// connection_name is name ("" for all), and returns how many it closed.
func (s *RabbitMQServer) CloseConnections(ctx context.Context, name, reason string) (int, error) {
	out, err := s.Ctl(ctx, "list_connections", "--no-table-headers", "pid", "client_properties")
	if err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// client_properties is printed as an Erlang list of
		// {"key",value} tuples.
		pid, props, ok := strings.Cut(strings.TrimSpace(sc.Text()), "\t")
		if !ok || !strings.HasPrefix(pid, "<") || (name != "" && !strings.Contains(props, `{"connection_name","`+name+`"}`)) {
			continue
		}
		if _, err := s.Ctl(ctx, "close_connection", pid, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
