package sinks

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/sinks/tlstest"
)

// mutualTLSServer answers with the name of the client certificate it was
// shown, and refuses a client without one its CA signed.
func mutualTLSServer(t *testing.T, ca *tlstest.CA) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestClientCertificateFollowsItsFiles: a renewed client certificate is
// shown at the next connection without a restart, and a renewal caught
// half written (a new certificate beside the old key) keeps the one before.
func TestClientCertificateFollowsItsFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "backend-ca")
	srv := mutualTLSServer(t, ca)
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteKeyPair(t, dir, "client", ca.Client(t, "first"))
	cfg, err := NewTLSConfig(TLSFiles{CAFile: ca.WriteCA(t, dir), CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	client := NewHTTPClient(ClientOptions{Timeout: 5 * time.Second, TLS: cfg})
	shown := func() string {
		t.Helper()
		client.CloseIdleConnections() // a new connection, a new handshake
		a, err := Post(context.Background(), client, srv.URL, http.Header{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a.Body
	}
	if got := shown(); got != "first" {
		t.Fatalf("shown %q, want first", got)
	}
	later := time.Now().Add(time.Minute)
	tlstest.WriteKeyPair(t, dir, "client", ca.Client(t, "renewed"))
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	if got := shown(); got != "renewed" {
		t.Fatalf("after a renewal, shown %q, want renewed", got)
	}
	// Half a renewal: a new certificate whose key is not written yet.
	other := t.TempDir()
	halfCert, _ := tlstest.WriteKeyPair(t, other, "client", ca.Client(t, "half"))
	data, _ := os.ReadFile(halfCert)
	os.WriteFile(certFile, data, 0o644)
	even := later.Add(time.Minute)
	os.Chtimes(certFile, even, even)
	if got := shown(); got != "renewed" {
		t.Fatalf("during a half-written renewal, shown %q, want the one before", got)
	}
}

// TestCertificateTroubleIsAConfigurationError: a handshake that fails on a
// certificate, the backend's or statsbridge's, waits for an operator as a
// 401 does; a backend that is not there is a network failure.
func TestCertificateTroubleIsAConfigurationError(t *testing.T) {
	ca := tlstest.NewCA(t, "backend-ca")
	stranger := tlstest.NewCA(t, "stranger-ca")
	srv := mutualTLSServer(t, ca)
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteKeyPair(t, dir, "client", ca.Client(t, "statsbridge"))
	strangerCert, strangerKey := tlstest.WriteKeyPair(t, dir, "stranger", stranger.Client(t, "statsbridge"))
	caFile := ca.WriteCA(t, dir)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name  string
		url   string
		files TLSFiles
		want  Outcome
	}{
		{"trusted both ways", srv.URL, TLSFiles{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}, Delivered},
		{"a backend signed by a CA not trusted", srv.URL, TLSFiles{CertFile: certFile, KeyFile: keyFile}, ConfigError},
		{"a backend of another name", srv.URL, TLSFiles{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "carbon.example.org"}, ConfigError},
		{"no client certificate", srv.URL, TLSFiles{CAFile: caFile}, ConfigError},
		{"a client certificate the backend does not trust", srv.URL, TLSFiles{CAFile: caFile, CertFile: strangerCert, KeyFile: strangerKey}, ConfigError},
		{"insecure_skip_verify", srv.URL, TLSFiles{InsecureSkipVerify: true, CertFile: certFile, KeyFile: keyFile}, Delivered},
		{"no backend", "https" + closed.URL[len("http"):], TLSFiles{CAFile: caFile}, Unreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := NewTLSConfig(tt.files)
			if err != nil {
				t.Fatal(err)
			}
			client := NewHTTPClient(ClientOptions{Timeout: 5 * time.Second, TLS: cfg})
			a, err := Post(context.Background(), client, tt.url, http.Header{}, nil)
			if err == nil {
				err = Classify(a)
			}
			if got, _ := OutcomeOf(err); got != tt.want {
				t.Errorf("outcome %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestTLSFilesThatDoNotLoad(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("nothing here"), 0o644)
	for _, f := range []TLSFiles{
		{CAFile: notPEM},
		{CAFile: filepath.Join(dir, "missing.pem")},
		{CertFile: notPEM, KeyFile: notPEM},
	} {
		if _, err := NewTLSConfig(f); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
}
