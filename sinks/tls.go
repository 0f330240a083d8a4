package sinks

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSFiles say how a push sink checks its backend and shows itself to it.
type TLSFiles struct {
	CAFile             string // PEM CA certificates; "" uses the system's
	CertFile, KeyFile  string // a client certificate and its key, or ""
	ServerName         string // the name the backend's certificate must hold; "" is the host dialled
	InsecureSkipVerify bool
}

// NewTLSConfig reads the files into a client TLS configuration. The client
// certificate is read again at a handshake after either file changed, so a
// renewed certificate (a short-lived one from an ACME or Vault agent, say)
// needs no restart; while a renewal is half written, the certificate read
// before keeps being shown.
func NewTLSConfig(f TLSFiles) (*tls.Config, error) {
	c := &tls.Config{ServerName: f.ServerName, InsecureSkipVerify: f.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f.CAFile)
		}
	}
	if f.CertFile != "" {
		kp := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile}
		if err := kp.load(); err != nil {
			return nil, err
		}
		c.GetClientCertificate = kp.get
	}
	return c, nil
}

// keyPair is a client certificate that follows its files.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	changed [2]time.Time // the files' modification times when last read
}

func (kp *keyPair) load() error {
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return err
	}
	kp.cert = &cert
	kp.changed = kp.modTimes()
	return nil
}

func (kp *keyPair) modTimes() [2]time.Time {
	var out [2]time.Time
	for i, name := range []string{kp.certFile, kp.keyFile} {
		if fi, err := os.Stat(name); err == nil {
			out[i] = fi.ModTime()
		}
	}
	return out
}

func (kp *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.modTimes() != kp.changed {
		_ = kp.load() // a pair that does not load yet keeps the one before
	}
	return kp.cert, nil
}
