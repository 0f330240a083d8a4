package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSubTableOfAnArrayElement: a table header under an array of tables
// ("[prosody.family.values]", "[graphite.tls]") belongs to the array's
// latest element, as TOML says, and its keys are not lost to defaults.
func TestSubTableOfAnArrayElement(t *testing.T) {
	cfg, err := Parse([]byte(`
[[prosody.family]]
name = "a"
statsd = "a"
type = "gauge"
[[prosody.family]]
name = "b"
statsd = "b"
type = "gauge"
[prosody.family.values]
host = ["x.y"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Prosody.Families[0].Values; len(got) != 0 {
		t.Errorf("family[0].values = %v, want none", got)
	}
	if got, want := cfg.Prosody.Families[1].Values, map[string][]string{"host": {"x.y"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("family[1].values = %v, want %v", got, want)
	}
}

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

func TestTLSAndAuthSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "client")
	otherCert, _ := writeKeyPair(t, dir, "other")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	q := strconv.Quote
	tests := []struct {
		name    string
		toml    string
		wantKey string // "" when the file is valid
		check   func(t *testing.T, c Config)
	}{
		{"graphite with every TLS setting", `[[graphite]]
address = "carbon:2004"
[graphite.tls]
enabled = true
ca_file = ` + q(otherCert) + `
cert_file = ` + q(cert) + `
key_file = ` + q(key) + `
server_name = "carbon.example.org"
`, "", func(t *testing.T, c Config) {
			want := GraphiteTLS{Enabled: true, TLS: TLS{CAFile: otherCert, CertFile: cert, KeyFile: key, ServerName: "carbon.example.org"}}
			if c.Graphite[0].TLS != want {
				t.Errorf("tls = %+v, want %+v", c.Graphite[0].TLS, want)
			}
		}},
		{"remote-write TLS as an inline table, basic auth and a proxy", `[[remote_write]]
url = "https://mimir:8080/api/v1/push"
username = "tenant1"
password = "s3cret-pw"
proxy_url = "http://proxyuser:proxypw@proxy:3128"
tls = { ca_file = ` + q(otherCert) + `, insecure_skip_verify = true }
`, "", func(t *testing.T, c Config) {
			rw := c.RemoteWrite[0]
			if rw.TLS.CAFile != otherCert || !rw.TLS.InsecureSkipVerify || rw.Username != "tenant1" ||
				rw.Password.Reveal() != "s3cret-pw" || rw.ProxyURL != "http://proxyuser:proxypw@proxy:3128" {
				t.Errorf("remote_write = %+v", rw)
			}
			r := c.Redactor()
			text := "proxy http://proxyuser:proxypw@proxy:3128 said s3cret-pw, " + base64.StdEncoding.EncodeToString([]byte("tenant1:s3cret-pw"))
			if got := r.Redact(text); strings.Contains(got, "proxypw") || strings.Contains(got, "s3cret") ||
				strings.Contains(got, base64.StdEncoding.EncodeToString([]byte("tenant1:s3cret-pw"))) {
				t.Errorf("redacted: %s", got)
			}
		}},
		{"graphite TLS settings without enabled", `[[graphite]]
address = "carbon:2004"
tls = { ca_file = ` + q(otherCert) + ` }
`, "graphite[0].tls", nil},
		{"a certificate without its key", `[[graphite]]
tls = { enabled = true, cert_file = ` + q(cert) + ` }
`, "graphite[0].tls.cert_file", nil},
		{"a key without its certificate", `[[influx]]
url = "https://influx:8086/write?db=x"
tls = { key_file = ` + q(key) + ` }
`, "influx[0].tls.key_file", nil},
		{"a certificate that is not the key's", `[[remote_write]]
url = "https://mimir/api/v1/push"
tls = { cert_file = ` + q(otherCert) + `, key_file = ` + q(key) + ` }
`, "remote_write[0].tls.cert_file", nil},
		{"a CA file without certificates", `[[remote_write]]
url = "https://mimir/api/v1/push"
tls = { ca_file = ` + q(notPEM) + ` }
`, "remote_write[0].tls.ca_file", nil},
		{"a missing CA file", `[[graphite]]
tls = { enabled = true, ca_file = "/nonexistent/ca.pem" }
`, "graphite[0].tls.ca_file", nil},
		{"TLS settings for an http:// url", `[[influx]]
url = "http://influx:8086/write?db=x"
tls = { server_name = "influx.example.org" }
`, "influx[0].tls", nil},
		{"a proxy of an unknown scheme", `[[influx]]
url = "http://influx:8086/write?db=x"
proxy_url = "ftp://u:pw@proxy"
`, "influx[0].proxy_url", nil},
		{"a password without a username", `[[remote_write]]
url = "https://mimir/api/v1/push"
password = "pw"
`, "remote_write[0].password", nil},
		{"basic authentication and a bearer token", `[[remote_write]]
url = "https://mimir/api/v1/push"
username = "u"
password = "pw"
bearer_token = "tok"
`, "remote_write[0].username", nil},
		{"an Authorization header and a bearer token", `[[remote_write]]
url = "https://mimir/api/v1/push"
bearer_token = "tok"
headers = { authorization = "Basic eDp5" }
`, "remote_write[0].headers", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.toml))
			if tt.wantKey == "" {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, cfg)
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want an error for %s", err, tt.wantKey)
			}
			found := false
			for _, e := range es {
				found = found || e.Key == tt.wantKey
				if e.Line == 0 {
					t.Errorf("%v: no line", e)
				}
				if strings.Contains(e.Error(), "pw@") {
					t.Errorf("%v: shows a password", e)
				}
			}
			if !found {
				t.Errorf("errors %v, want one for %s", err, tt.wantKey)
			}
		})
	}
}

func TestRemoteWritePasswordFromEnvironmentAndFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("from-a-file\n"), 0o600)
	t.Setenv("RW_PASSWORD", "from-the-env")
	cfg, err := Parse([]byte(`[[remote_write]]
url = "https://a/api/v1/push"
username = "u"
password = "${RW_PASSWORD}"
[[remote_write]]
url = "https://b/api/v1/push"
username = "u"
password_file = ` + strconv.Quote(file) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := cfg.RemoteWrite[0].Password.Reveal(), cfg.RemoteWrite[1].Password.Reveal(); a != "from-the-env" || b != "from-a-file" {
		t.Errorf("passwords %q and %q", a, b)
	}
}
