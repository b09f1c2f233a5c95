package testenv

import (
	"bufio"
	"bytes"
	"crypto/tls"
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

// RedisURLEnv names the environment variable that points tests at a shared
// Redis server (for example redis://127.0.0.1:6379/0).
const RedisURLEnv = "BACKPLANE_REDIS_URL"

// redisStartTimeout bounds how long a private redis-server may take to answer
// PING after it was started.
const redisStartTimeout = 15 * time.Second

// RedisURL returns the URL of a shared Redis server for tests that need a
// broker but never fault it: BACKPLANE_REDIS_URL when set, else
// redis://127.0.0.1:6379 when it answers PING. Otherwise it calls
// Unavailable. Tests must not kill, restart or CLIENT KILL-all a shared
// server; they may only close their own connections.
func RedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(RedisURLEnv); u != "" {
		return u
	}
	const addr = "127.0.0.1:6379"
	if _, err := RedisDo(addr, nil, "PING"); err != nil {
		Unavailable(t, "no Redis server: %s is not set and %s does not answer PING: %v", RedisURLEnv, addr, err)
	}
	return "redis://" + addr
}

// RedisServerPath returns the path of the redis-server binary, or calls
// Unavailable when there is none on PATH.
func RedisServerPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server binary not found on PATH (%v); install Redis >= 7 to run these tests", err)
	}
	return p
}

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	args []string
}

// WithRedisArgs adds command-line arguments to redis-server, for example
// WithRedisArgs("--requirepass", "secret").
func WithRedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// RedisServer is a private redis-server process owned by one test. It listens
// on 127.0.0.1 on a port chosen at start and keeps that port across Restart.
// It is stopped when the test ends. Its methods are safe for concurrent use.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	tls  *tls.Config // client config for readiness checks; nil for plaintext

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
}

// StartRedis starts a private redis-server on a free port in t.TempDir()
// with persistence off and waits until it answers PING. It calls Unavailable
// when redis-server is not installed and fails t when it does not start.
func StartRedis(t testing.TB, opts ...RedisOption) *RedisServer {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	return startRedis(t, cfg.args, nil, nil)
}

// startRedis starts a server. mkArgs, when set, returns the listening
// arguments for a port (TLS servers listen on --tls-port instead of --port).
func startRedis(t testing.TB, extra []string, clientTLS *tls.Config, mkArgs func(port int) []string) *RedisServer {
	t.Helper()
	bin := RedisServerPath(t)
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		listen := []string{"--port", strconv.Itoa(port)}
		if mkArgs != nil {
			listen = mkArgs(port)
		}
		args := append([]string{
			"--bind", "127.0.0.1",
			"--dir", dir,
			"--save", "",
			"--appendonly", "no",
			"--daemonize", "no",
			"--protected-mode", "no",
			"--logfile", filepath.Join(dir, "redis.log"),
		}, listen...)
		args = append(args, extra...)
		s := &RedisServer{t: t, bin: bin, dir: dir, port: port, args: args, tls: clientTLS}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("testenv: redis-server did not start: %v", lastErr)
	return nil
}

// start runs the process and waits until it answers PING; on failure the
// process is killed and the error carries the tail of its log.
func (s *RedisServer) start() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(redisStartTimeout)
	for {
		_, err := RedisDo(s.Addr(), s.tls, "PING")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited: %s%s", s.port, out.String(), s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v%s", s.port, redisStartTimeout, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *RedisServer) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return "\nredis.log tail:\n" + string(b)
}

func (s *RedisServer) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.Kill()
}

// Addr returns host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the port the server listens on.
func (s *RedisServer) Port() int { return s.port }

// Dir returns the server's working directory.
func (s *RedisServer) Dir() string { return s.dir }

// URL returns redis://127.0.0.1:port (rediss:// for a TLS server).
func (s *RedisServer) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Kill stops the server with SIGKILL and waits until the process is gone.
// Killing a stopped server does nothing.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart kills the server if it runs and starts it again on the same port,
// returning once it answers PING. Data is not kept (persistence is off), but
// a cluster node keeps its nodes.conf.
func (s *RedisServer) Restart() {
	s.t.Helper()
	if err := s.restart(); err != nil {
		s.t.Fatalf("testenv: restart redis-server on port %d: %v", s.port, err)
	}
}

func (s *RedisServer) restart() error {
	s.Kill()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return fmt.Errorf("the test has ended")
	}
	// The port may briefly stay busy after the kill; retry within a bound.
	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Do sends one command to the server on a fresh connection and returns the
// reply (see RedisDo).
func (s *RedisServer) Do(args ...string) (string, error) {
	return RedisDo(s.Addr(), s.tls, args...)
}

// Clients returns CLIENT LIST of the server (see RedisClients).
func (s *RedisServer) Clients(t testing.TB) []RedisClient {
	t.Helper()
	return RedisClients(t, s.Addr(), s.tls)
}

// KillSubscribers CLIENT KILLs every connection of this private server that
// is subscribed to a channel, pattern or shard channel, and returns how many
// it killed. Never use the same on a shared server.
func (s *RedisServer) KillSubscribers(t testing.TB) int {
	t.Helper()
	n := 0
	for _, c := range s.Clients(t) {
		if c.Subscribed() {
			if RedisKillClient(t, s.Addr(), s.tls, c.ID) {
				n++
			}
		}
	}
	return n
}

// RedisClient is one line of CLIENT LIST.
type RedisClient struct {
	ID     string
	Addr   string // the client's address as the server sees it
	LAddr  string // the server's address of the connection
	Name   string
	Fields map[string]string
}

// Subscribed reports whether the connection is subscribed to a channel,
// pattern or shard channel (CLIENT LIST sub, psub, ssub), whatever its
// protocol version.
func (c RedisClient) Subscribed() bool {
	for _, f := range []string{"sub", "psub", "ssub"} {
		if n, _ := strconv.Atoi(c.Fields[f]); n > 0 {
			return true
		}
	}
	return false
}

// RedisClients returns CLIENT LIST of the server at addr (tlsConf nil for
// plaintext).
func RedisClients(t testing.TB, addr string, tlsConf *tls.Config) []RedisClient {
	t.Helper()
	out, err := RedisDo(addr, tlsConf, "CLIENT", "LIST")
	if err != nil {
		t.Fatalf("testenv: CLIENT LIST on %s: %v", addr, err)
	}
	var list []RedisClient
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c := RedisClient{Fields: map[string]string{}}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			c.Fields[k] = v
		}
		c.ID, c.Addr, c.LAddr, c.Name = c.Fields["id"], c.Fields["addr"], c.Fields["laddr"], c.Fields["name"]
		list = append(list, c)
	}
	return list
}

// RedisKillClient closes the connection with the given client ID on the
// server at addr and reports whether it existed. It is safe on a shared
// server as long as the ID is one of the test's own connections.
func RedisKillClient(t testing.TB, addr string, tlsConf *tls.Config, id string) bool {
	t.Helper()
	out, err := RedisDo(addr, tlsConf, "CLIENT", "KILL", "ID", id)
	if err != nil {
		if strings.Contains(err.Error(), "No such client") {
			return false
		}
		t.Fatalf("testenv: CLIENT KILL ID %s on %s: %v", id, addr, err)
	}
	return out == "1"
}

// RedisKillNamedSubscribers CLIENT KILLs the subscribed connections named
// name on the server at addr and returns how many it killed. With a name only
// the test uses, it is safe on a shared server.
func RedisKillNamedSubscribers(t testing.TB, addr string, tlsConf *tls.Config, name string) int {
	t.Helper()
	n := 0
	for _, c := range RedisClients(t, addr, tlsConf) {
		if c.Name == name && c.Subscribed() && RedisKillClient(t, addr, tlsConf, c.ID) {
			n++
		}
	}
	return n
}

// RedisDo sends one command to the Redis server at addr on a fresh
// connection (TLS when tlsConf is not nil) and returns its reply: the text
// of a simple string, bulk string or integer reply. An error reply is
// returned as an error. Array replies are not supported. It exists so that
// testenv needs no Redis client library.
func RedisDo(addr string, tlsConf *tls.Config, args ...string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	var conn net.Conn
	var err error
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(&d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("testenv: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("testenv: bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("testenv: unsupported reply %q", line)
	}
}

// redisInfoField returns field of INFO section (for example cluster_state of
// CLUSTER INFO output).
func redisInfoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == field {
			return v
		}
	}
	return ""
}

// redisURLWithAddrs builds a redis:// URL listing several addresses in the
// form redis.ParseClusterURL understands.
func redisURLWithAddrs(scheme string, addrs []string) string {
	u := url.URL{Scheme: scheme, Host: addrs[0]}
	q := url.Values{}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
