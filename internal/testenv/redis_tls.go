package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisTLSServer is a private redis-server that accepts only TLS
// connections, with a certificate issued by a test CA made for it.
type RedisTLSServer struct {
	*RedisServer
	// CAPool holds the test CA that issued the server certificate.
	CAPool *x509.CertPool
	// CAFile, CertFile and KeyFile are PEM files of the CA certificate and
	// of the server's certificate and key.
	CAFile, CertFile, KeyFile string
}

// ClientTLSConfig returns a client configuration that trusts the test CA.
func (s *RedisTLSServer) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CAPool, MinVersion: tls.VersionTLS12}
}

// StartRedisTLS starts a private redis-server that listens only on a TLS
// port (plaintext port 0) with a certificate for 127.0.0.1 issued by a fresh
// test CA; clients need no certificate. It calls Unavailable when
// redis-server was built without TLS support.
func StartRedisTLS(t testing.TB) *RedisTLSServer {
	t.Helper()
	bin := RedisServerPath(t)
	if !redisHasTLS(bin) {
		Unavailable(t, "%s was built without TLS support (BUILD_TLS=yes)", bin)
	}
	dir := t.TempDir()
	ca, caKey := redisTestCA(t)
	srvCert, srvKey := redisLeafCert(t, ca, caKey)
	s := &RedisTLSServer{
		CAPool:   x509.NewCertPool(),
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server-key.pem"),
	}
	s.CAPool.AddCert(ca)
	redisWritePEM(t, s.CAFile, "CERTIFICATE", ca.Raw)
	redisWritePEM(t, s.CertFile, "CERTIFICATE", srvCert)
	redisWritePEM(t, s.KeyFile, "EC PRIVATE KEY", srvKey)
	s.RedisServer = startRedis(t, []string{
		"--tls-cert-file", s.CertFile,
		"--tls-key-file", s.KeyFile,
		"--tls-ca-cert-file", s.CAFile,
		"--tls-auth-clients", "no",
	}, s.ClientTLSConfig(), func(port int) []string {
		return []string{"--port", "0", "--tls-port", strconv.Itoa(port)}
	})
	return s
}

// redisHasTLS reports whether the redis-server binary supports TLS. A TLS
// build asked for a TLS port without a CA refuses to start with a message
// about the CA file; a build without TLS does not get that far.
func redisHasTLS(bin string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	probe := exec.CommandContext(ctx, bin, "--port", "0", "--tls-port", "1",
		"--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent")
	msg, _ := probe.CombinedOutput()
	low := strings.ToLower(string(msg))
	return strings.Contains(low, "tls-ca-cert") || strings.Contains(low, "certificate")
}

func redisTestCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "backplane test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: parse CA certificate: %v", err)
	}
	return cert, key
}

// redisLeafCert issues a server certificate for 127.0.0.1 and localhost and
// returns its DER and the DER of its EC key.
func redisLeafCert(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certDER, keyDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: server key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: server certificate: %v", err)
	}
	keyDER, err = x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal server key: %v", err)
	}
	return certDER, keyDER
}

func redisWritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
}
