package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names the environment variable that points tests at a
// shared PostgreSQL server (for example
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
const PostgresURLEnv = "BACKPLANE_POSTGRES_URL"

// postgresSharedURL is the machine's server that .ci/run starts.
const postgresSharedURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"

// postgresStartTimeout bounds how long a private server may take to accept
// connections after it was started (crash recovery after Kill included).
const postgresStartTimeout = 30 * time.Second

// PostgresURL returns the URL of a shared PostgreSQL server for tests that
// need one but never fault it: BACKPLANE_POSTGRES_URL when set, else the
// machine's server (127.0.0.1:5432, user postgres, database postgres) when
// it accepts a connection. Otherwise it calls Unavailable. Tests must not
// stop or restart a shared server, nor terminate backends other than their
// own; they use namespaces (channels) of their own.
func PostgresURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(PostgresURLEnv); u != "" {
		return u
	}
	if err := PostgresPing(postgresSharedURL); err != nil {
		Unavailable(t, "no PostgreSQL server: %s is not set and %s does not accept a connection: %v",
			PostgresURLEnv, "127.0.0.1:5432 (user postgres, database postgres)", err)
	}
	return postgresSharedURL
}

// PostgresPing connects to the server of url, runs an empty query and
// disconnects, within 5 seconds.
func PostgresPing(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.Ping(ctx)
}

// PostgresExec runs sql with args on a fresh connection to url and returns
// the first column of every row, as text. Without args, sql may hold
// several statements.
func PostgresExec(url, sql string, args ...any) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	if len(args) == 0 {
		// Several statements in one string need the simple protocol.
		args = []any{pgx.QueryExecModeSimpleProtocol}
	}
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if len(vals) > 0 {
			out = append(out, fmt.Sprint(vals[0]))
		}
	}
	return out, rows.Err()
}

// PostgresTerminate terminates every backend of the server at url whose
// application_name is name (pg_terminate_backend), except the connection
// that asks, and returns how many it terminated. With a name only the test
// uses, it is safe on a shared server.
func PostgresTerminate(t testing.TB, url, name string) int {
	t.Helper()
	out, err := PostgresExec(url, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, name)
	if err != nil {
		t.Fatalf("testenv: terminate the backends named %q: %v", name, err)
	}
	n, _ := strconv.Atoi(out[0])
	return n
}

// PostgresBinDir returns the directory that holds initdb and postgres: the
// one of initdb on PATH, else the newest /usr/lib/postgresql/*/bin (where
// Debian's postgresql package puts them, off PATH). It calls Unavailable
// when there is none.
func PostgresBinDir(t testing.TB) string {
	t.Helper()
	if dir, err := postgresBinDir(); err == nil {
		return dir
	} else {
		Unavailable(t, "%v; install PostgreSQL (Debian: apt-get install postgresql) to run these tests", err)
	}
	return ""
}

func postgresBinDir() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb and postgres not found on PATH nor under /usr/lib/postgresql/*/bin")
}

// PostgresOption configures StartPostgres.
type PostgresOption func(*postgresConfig)

type postgresConfig struct {
	settings []string
}

// WithPostgresSetting adds a server setting (postgres -c name=value), for
// example WithPostgresSetting("max_connections", "50").
func WithPostgresSetting(name, value string) PostgresOption {
	return func(c *postgresConfig) { c.settings = append(c.settings, "-c", name+"="+value) }
}

// PostgresServer is a private PostgreSQL server owned by one test: a data
// directory made by initdb and a postgres process listening on 127.0.0.1
// on a port chosen at start, kept across Restart. Authentication is trust
// for the superuser postgres; the database is postgres. It is stopped and
// its data directory removed when the test ends. Its methods are safe for
// concurrent use.
//
// Tests run as root, and initdb and postgres refuse to: as root, both run
// as the OS user postgres (Debian's package creates it), on a data
// directory that user owns outside t.TempDir (whose parents only root may
// enter). postgres runs as a child of the test process rather than under
// pg_ctl, so that Kill is exact (SIGKILL to its process group: the
// postmaster and every backend at once) and a test binary that dies takes
// the server with it.
type PostgresServer struct {
	t        testing.TB
	bin      string // directory of initdb and postgres
	root     string // owned by the server's user: data/, sock/, log
	port     int
	settings []string
	cred     *procCred

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
}

// StartPostgres initialises a data directory and starts a private server
// on a free port with fsync off (a Kill keeps what was committed, which
// is in the OS's cache; a machine crash would not), and waits until it
// accepts connections. It calls Unavailable when PostgreSQL
// is not installed (or, as root, there is no postgres user) and fails t
// when it does not start.
func StartPostgres(t testing.TB, opts ...PostgresOption) *PostgresServer {
	t.Helper()
	var cfg postgresConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := PostgresBinDir(t)
	cred, err := postgresCred()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	root, err := os.MkdirTemp("", "backplane-pg-")
	if err != nil {
		t.Fatalf("testenv: postgres dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	for _, d := range []string{root, filepath.Join(root, "sock")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("testenv: postgres dir: %v", err)
		}
		if err := cred.chown(d); err != nil {
			t.Fatalf("testenv: postgres dir: %v", err)
		}
	}
	s := &PostgresServer{t: t, bin: bin, root: root, settings: cfg.settings, cred: cred}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.Dir(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = root
	cred.apply(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.port = FreePort(t)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("testenv: postgres did not start: %v", lastErr)
	return nil
}

// start runs postgres and waits until it accepts a connection; on failure
// the process is killed and the error carries the tail of its log.
func (s *PostgresServer) start() error {
	args := append([]string{
		"-D", s.Dir(),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + filepath.Join(s.root, "sock"),
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
	}, s.settings...)
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.root
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	s.cred.apply(cmd)
	setServerProcAttr(cmd, s.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(postgresStartTimeout)
	for {
		err := PostgresPing(s.URL())
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres on port %d exited: %v%s", s.port, err, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("postgres on port %d did not accept a connection within %v: %v%s", s.port, postgresStartTimeout, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *PostgresServer) logPath() string { return filepath.Join(s.root, "postgres.log") }

func (s *PostgresServer) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return "\npostgres.log tail:\n" + string(b)
}

func (s *PostgresServer) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.Kill()
}

// Addr returns host:port.
func (s *PostgresServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the port the server listens on.
func (s *PostgresServer) Port() int { return s.port }

// Dir returns the server's data directory.
func (s *PostgresServer) Dir() string { return filepath.Join(s.root, "data") }

// URL returns postgres://postgres@127.0.0.1:port/postgres?sslmode=disable&connect_timeout=5.
func (s *PostgresServer) URL() string { return s.URLVia(s.Addr()) }

// URLVia returns URL with addr (host:port, a proxy's for example) in
// place of the server's address.
func (s *PostgresServer) URLVia(addr string) string {
	return "postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=5"
}

// Kill stops the server abruptly: SIGKILL to the postmaster and every
// backend, then waits until the postmaster is gone. Killing a stopped
// server does nothing. The next start runs crash recovery.
func (s *PostgresServer) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return // already gone: its process group ID may be another's now
	default:
	}
	killServerGroup(cmd)
	<-exited
}

// Restart kills the server if it runs and starts it again on the same port,
// returning once it accepts connections. The data directory is kept.
func (s *PostgresServer) Restart() {
	s.t.Helper()
	if err := s.restart(); err != nil {
		s.t.Fatalf("testenv: restart postgres on port %d: %v", s.port, err)
	}
}

func (s *PostgresServer) restart() error {
	s.Kill()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return fmt.Errorf("the test has ended")
	}
	// The port, or the shared memory of backends still exiting, may stay
	// busy for a moment after the kill; retry within a bound.
	deadline := time.Now().Add(postgresStartTimeout)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Exec runs sql on a fresh connection and returns the first column of each
// row (see PostgresExec).
func (s *PostgresServer) Exec(sql string, args ...any) ([]string, error) {
	return PostgresExec(s.URL(), sql, args...)
}

// Terminate terminates the backends whose application_name is name and
// returns how many (see PostgresTerminate).
func (s *PostgresServer) Terminate(t testing.TB, name string) int {
	t.Helper()
	return PostgresTerminate(t, s.URL(), name)
}

// TerminateAll terminates every client backend of this private server but
// the asking one, and returns how many. Never use the same on a shared
// server.
func (s *PostgresServer) TerminateAll(t testing.TB) int {
	t.Helper()
	out, err := s.Exec(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatalf("testenv: terminate backends: %v", err)
	}
	n, _ := strconv.Atoi(out[0])
	return n
}

// procCred is the OS user the server runs as; nil fields: the current one.
type procCred struct {
	uid, gid uint32
	set      bool
}

// postgresCred returns the user to run initdb and postgres as: postgres
// when the test runs as root, else the current user.
func postgresCred() (*procCred, error) {
	if os.Geteuid() != 0 {
		return &procCred{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root, but there is no OS user postgres to run it as: %v", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &procCred{uid: uint32(uid), gid: uint32(gid), set: true}, nil
}

func (c *procCred) chown(path string) error {
	if !c.set {
		return nil
	}
	return os.Chown(path, int(c.uid), int(c.gid))
}

// apply makes cmd run as c (the environment's HOME too, which initdb
// does not need but some locales' lookups do).
func (c *procCred) apply(cmd *exec.Cmd) {
	if !c.set {
		return
	}
	setCredential(cmd, c)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME=/tmp")
}
