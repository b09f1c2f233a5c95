package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSURLEnv is the environment variable naming a NATS server that tests
// may use instead of the one on 127.0.0.1:4222.
const NATSURLEnv = "BACKPLANE_NATS_URL"

// DefaultNATSURL is where NATSURL looks when NATSURLEnv is not set.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// natsReadyTimeout bounds how long a starting server may take.
const natsReadyTimeout = 10 * time.Second

// NATSURL returns the URL of a shared, externally run NATS server: the value
// of BACKPLANE_NATS_URL if set, else nats://127.0.0.1:4222 if something
// answers there. Otherwise it calls Unavailable. Tests must never shut the
// shared server down.
func NATSURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(NATSURLEnv); u != "" {
		return u
	}
	u, _ := url.Parse(DefaultNATSURL)
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		Unavailable(t, "no NATS server at %s (set %s): %v", DefaultNATSURL, NATSURLEnv, err)
		return ""
	}
	_ = c.Close()
	return DefaultNATSURL
}

// NATSOption configures StartNATS.
type NATSOption func(*natsConfig)

type natsConfig struct {
	tls        bool
	user, pass string
	token      string
	nkey       string
	maxPayload int32
	jetStream  bool
}

// WithNATSTLS makes the server require TLS with a certificate issued by a
// CA generated for this server (see NATSServer.CAFile and ClientTLSConfig).
func WithNATSTLS() NATSOption { return func(c *natsConfig) { c.tls = true } }

// WithNATSUser makes the server require the given user and password.
func WithNATSUser(user, password string) NATSOption {
	return func(c *natsConfig) { c.user, c.pass = user, password }
}

// WithNATSToken makes the server require the given authentication token.
func WithNATSToken(token string) NATSOption { return func(c *natsConfig) { c.token = token } }

// WithNATSNKey makes the server accept the NKey user with the given public
// key (a "U..." string) as its only user.
func WithNATSNKey(publicKey string) NATSOption { return func(c *natsConfig) { c.nkey = publicKey } }

// WithNATSJetStream enables JetStream, with its store in a temporary
// directory that outlives restarts of the server (a file-storage stream
// survives NATSServer.Restart; a memory-storage one does not).
func WithNATSJetStream() NATSOption { return func(c *natsConfig) { c.jetStream = true } }

// WithNATSMaxPayload sets the server's max_payload.
func WithNATSMaxPayload(n int32) NATSOption { return func(c *natsConfig) { c.maxPayload = n } }

// NATSServer is an embedded nats-server running in-process on a fixed port
// of 127.0.0.1, so that it can be shut down and started again on the same
// address. It is shut down when the test ends.
type NATSServer struct {
	t    testing.TB
	opts server.Options // template; copied for every (re)start
	port int

	caFile string
	caPool *x509.CertPool

	mu  sync.Mutex
	srv *server.Server // nil while shut down
}

// StartNATS starts an embedded nats-server on a free port of 127.0.0.1 and
// returns once it accepts connections.
func StartNATS(t testing.TB, opts ...NATSOption) *NATSServer {
	t.Helper()
	var cfg natsConfig
	for _, o := range opts {
		o(&cfg)
	}
	s := &NATSServer{t: t, port: FreePort(t)}
	s.opts = server.Options{
		Host:                  "127.0.0.1",
		Port:                  s.port,
		NoLog:                 true,
		NoSigs:                true,
		DisableShortFirstPing: true,
		Username:              cfg.user,
		Password:              cfg.pass,
		Authorization:         cfg.token,
		MaxPayload:            cfg.maxPayload,
		ServerName:            fmt.Sprintf("test-%d", s.port),
	}
	if cfg.nkey != "" {
		s.opts.Nkeys = []*server.NkeyUser{{Nkey: cfg.nkey}}
	}
	if cfg.jetStream {
		s.opts.JetStream = true
		s.opts.StoreDir = t.TempDir()
	}
	if cfg.tls {
		s.setupTLS(t)
	}
	s.mu.Lock()
	s.srv = startNATSServer(t, &s.opts)
	s.mu.Unlock()
	t.Cleanup(s.Shutdown)
	return s
}

func startNATSServer(t testing.TB, tmpl *server.Options) *server.Server {
	t.Helper()
	o := *tmpl
	if tmpl.TLSConfig != nil {
		o.TLSConfig = tmpl.TLSConfig.Clone()
	}
	o.Routes = slices.Clone(tmpl.Routes)
	var lastErr error
	// The port was free when chosen; a restart may briefly race with
	// another listener, so try a few times before giving up.
	for attempt := 0; attempt < 5; attempt++ {
		srv, err := server.NewServer(&o)
		if err != nil {
			t.Fatalf("testenv: nats-server options: %v", err)
		}
		go srv.Start()
		if srv.ReadyForConnections(natsReadyTimeout) {
			return srv
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		lastErr = fmt.Errorf("not ready after %v", natsReadyTimeout)
	}
	t.Fatalf("testenv: nats-server on port %d: %v", o.Port, lastErr)
	return nil
}

// URL returns the client URL: nats://127.0.0.1:port, or tls://... when the
// server requires TLS.
func (s *NATSServer) URL() string {
	scheme := "nats"
	if s.opts.TLSConfig != nil {
		scheme = "tls"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.port)
}

// Port returns the client port.
func (s *NATSServer) Port() int { return s.port }

// Server returns the running server, or nil while it is shut down.
func (s *NATSServer) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and waits until it is fully down. It is a
// no-op when the server is not running.
func (s *NATSServer) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart shuts the server down (if running) and starts a new one with the
// same options on the same port, returning once it accepts connections.
func (s *NATSServer) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv = startNATSServer(s.t, &s.opts)
}

// DisconnectClient closes the connection of the client with the given
// server-assigned client ID, as the server would close a misbehaving
// client. The client is expected to reconnect by itself.
func (s *NATSServer) DisconnectClient(cid uint64) error {
	srv := s.Server()
	if srv == nil {
		return server.ErrServerNotRunning
	}
	return srv.DisconnectClientByID(cid)
}

// CAFile returns the path of the PEM file of the test CA that issued the
// server certificate ("" without WithNATSTLS).
func (s *NATSServer) CAFile() string { return s.caFile }

// ClientTLSConfig returns a client TLS configuration that trusts the test
// CA (nil without WithNATSTLS).
func (s *NATSServer) ClientTLSConfig() *tls.Config {
	if s.caPool == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}
}

func (s *NATSServer) setupTLS(t testing.TB) {
	t.Helper()
	ca, leaf := newTestCA(t)
	s.caPool = x509.NewCertPool()
	s.caPool.AddCert(ca.cert)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatalf("testenv: write CA: %v", err)
	}
	s.opts.TLS = true
	s.opts.TLSTimeout = 2
	s.opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestCA makes an ECDSA P-256 CA and a server certificate it signed for
// 127.0.0.1, ::1 and localhost.
func newTestCA(t testing.TB) (testCA, tls.Certificate) {
	t.Helper()
	fail := func(err error) { t.Fatalf("testenv: test CA: %v", err) }
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "backplane test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		fail(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		fail(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		fail(err)
	}
	leaf := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return testCA{cert: caCert, key: caKey}, leaf
}

// NATSCluster is a cluster of embedded nats-servers joined by routes.
type NATSCluster struct {
	// Nodes are the cluster's servers, each on its own client port.
	Nodes []*NATSServer
}

// StartNATSCluster starts n embedded nats-servers with full-mesh routes and
// returns once every node has a route to every other node, so that
// subscription interest propagates. The servers are shut down when the
// test ends.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testenv: cluster of %d nodes", n)
	}
	clusterPorts := make([]int, n)
	var routes []*url.URL
	for i := range clusterPorts {
		clusterPorts[i] = FreePort(t)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clusterPorts[i]))})
	}
	c := &NATSCluster{}
	for i := range n {
		s := &NATSServer{t: t, port: FreePort(t)}
		s.opts = server.Options{
			Host:                  "127.0.0.1",
			Port:                  s.port,
			NoLog:                 true,
			NoSigs:                true,
			DisableShortFirstPing: true,
			ServerName:            fmt.Sprintf("node-%d", i),
			Routes:                routes,
		}
		s.opts.Cluster.Name = "backplane-test"
		s.opts.Cluster.Host = "127.0.0.1"
		s.opts.Cluster.Port = clusterPorts[i]
		s.opts.Cluster.PoolSize = -1 // one route per peer
		s.opts.Cluster.Compression.Mode = server.CompressionOff
		s.srv = startNATSServer(t, &s.opts)
		t.Cleanup(s.Shutdown)
		c.Nodes = append(c.Nodes, s)
	}
	c.WaitRoutes(t)
	return c
}

// URLs returns the client URLs of all nodes.
func (c *NATSCluster) URLs() []string {
	var us []string
	for _, s := range c.Nodes {
		us = append(us, s.URL())
	}
	return us
}

// WaitRoutes waits until every running node has a route to every other
// running node.
func (c *NATSCluster) WaitRoutes(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(natsReadyTimeout)
	for {
		var running []*server.Server
		for _, s := range c.Nodes {
			if srv := s.Server(); srv != nil {
				running = append(running, srv)
			}
		}
		ok := true
		for _, srv := range running {
			if srv.NumRoutes() != len(running)-1 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: nats cluster routes not formed after %v", natsReadyTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Node returns the node whose server ID is id, or nil.
func (c *NATSCluster) Node(id string) *NATSServer {
	for _, s := range c.Nodes {
		if srv := s.Server(); srv != nil && srv.ID() == id {
			return s
		}
	}
	return nil
}

// HasRouteInterest reports whether every running node other than the one
// with server ID home has received home's interest in subject over its
// route, that is whether a message published on any node reaches
// subscribers on home.
func (c *NATSCluster) HasRouteInterest(home, subject string) bool {
	for _, s := range c.Nodes {
		srv := s.Server()
		if srv == nil || srv.ID() == home {
			continue
		}
		rz, err := srv.Routez(&server.RoutezOptions{Subscriptions: true})
		if err != nil {
			return false
		}
		found := false
		for _, r := range rz.Routes {
			if r.RemoteID == home && slices.Contains(r.Subs, subject) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
