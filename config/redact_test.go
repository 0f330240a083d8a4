package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"text without a URL", "delivery failed: connection refused", "delivery failed: connection refused"},
		{"a URL without credentials", "http://influx:8086/write?db=statsd&u=admin", "http://influx:8086/write?db=statsd&u=admin"},
		{"a password", "http://admin:hunter2@influx:8086/write", "http://admin:xxxxx@influx:8086/write"},
		{"a user name alone stays", "http://admin@influx:8086/write", "http://admin@influx:8086/write"},
		{"net/http's own mask", `Post "http://admin:***@influx/write": EOF`, `Post "http://admin:xxxxx@influx/write": EOF`},
		{"InfluxDB 1.x's p, quoted in an error",
			`Post "http://influx:8086/write?db=s&p=hunter2&precision=ms": dial tcp 127.0.0.1:8086: connect: connection refused`,
			`Post "http://influx:8086/write?db=s&p=xxxxx&precision=ms": dial tcp 127.0.0.1:8086: connect: connection refused`},
		{"the first parameter", "https://prom/api/v1/write?access_token=abc.def&x=1", "https://prom/api/v1/write?access_token=xxxxx&x=1"},
		{"the last parameter, then a fragment", "https://h/w?x=1&token=abc#top", "https://h/w?x=1&token=xxxxx#top"},
		{"names in any case", "https://h/w?Password=a&PWD=b&ApiKey=c&API_KEY=d&Api-Key=e&X-Amz-Signature=f&X-Amz-Credential=g&X-Amz-Security-Token=h",
			"https://h/w?Password=xxxxx&PWD=xxxxx&ApiKey=xxxxx&API_KEY=xxxxx&Api-Key=xxxxx&X-Amz-Signature=xxxxx&X-Amz-Credential=xxxxx&X-Amz-Security-Token=xxxxx"},
		{"every listed name", "?p=1&password=1&pass=1&pwd=1&token=1&access_token=1&api_key=1&apikey=1&key=1&secret=1&auth=1&signature=1&sig=1&client_secret=1&refresh_token=1",
			"?p=xxxxx&password=xxxxx&pass=xxxxx&pwd=xxxxx&token=xxxxx&access_token=xxxxx&api_key=xxxxx&apikey=xxxxx&key=xxxxx&secret=xxxxx&auth=xxxxx&signature=xxxxx&sig=xxxxx&client_secret=xxxxx&refresh_token=xxxxx"},
		{"an escaped name", "https://h/w?access%5Ftoken=abc", "https://h/w?access%5Ftoken=xxxxx"},
		{"ordinary parameters stay", "?db=s&org=o&bucket=b&precision=ms&u=admin&page=2", "?db=s&org=o&bucket=b&precision=ms&u=admin&page=2"},
		{"an empty value stays empty", "https://h/w?token=&db=s", "https://h/w?token=&db=s"},
		{"a query without a scheme", `"/write?db=s&p=hunter2" refused`, `"/write?db=s&p=xxxxx" refused`},
		{"both, twice in one text", "from http://a:pw1@h1/x?p=s1 to http://b:pw2@h2/y?token=s2.",
			"from http://a:xxxxx@h1/x?p=xxxxx to http://b:xxxxx@h2/y?token=xxxxx."},
		{"a list of URLs", "sends_to=influx http://h/w?p=a, remote_write http://h/w?token=b (see http://h/?key=c)",
			"sends_to=influx http://h/w?p=xxxxx, remote_write http://h/w?token=xxxxx (see http://h/?key=xxxxx)"},
		{"punctuation inside a value is the value's", "http://h/w?token=a.b,c;d and more", "http://h/w?token=xxxxx and more"},
		{"a password with a slash does not parse, and is hidden", `parse "http://u:ab/cd@host/write": invalid port ":ab" after host`,
			`parse "http://u:xxxxx@host/write": invalid port ":ab" after host`},
		{"a password with an escaped '@'", "http://u:a%40b@host/write", "http://u:xxxxx@host/write"},
		{"a URL in a quoted error", `err="Get \"http://u:pw@h/m?token=t\": EOF"`, `err="Get \"http://u:xxxxx@h/m?token=xxxxx\": EOF"`},
		{"an @ in a query is no user information", "http://h:8086/write?db=s&u=me@example.com", "http://h:8086/write?db=s&u=me@example.com"},
		{"IPv6 hosts", "http://u:pw@[::1]:8086/write?p=x", "http://u:xxxxx@[::1]:8086/write?p=xxxxx"},
		{"other schemes", "tcp://u:pw@carbon:2003 and redis://:pw@r:6379", "tcp://u:xxxxx@carbon:2003 and redis://:xxxxx@r:6379"},
		{"lines end a URL", "http://u:pw@h/a\nnext line: user@example.com", "http://u:xxxxx@h/a\nnext line: user@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if again := Redact(Redact(tt.in)); again != tt.want {
				t.Errorf("redacting twice gives %q", again)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://admin:pw@influx:8086/write?db=s&p=x", "http://admin:xxxxx@influx:8086/write?db=s&p=xxxxx"},
		{"admin:pw@influx:8086/write?db=s", "admin:xxxxx@influx:8086/write?db=s"},
		{"http//rw:pw@prom:9090/api/v1/write?access_token=t", "http//rw:xxxxx@prom:9090/api/v1/write?access_token=xxxxx"},
		{"influx:8086/write?db=s", "influx:8086/write?db=s"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestRedactorHidesEveryConfiguredSecret: each secret slot's value, in
// each form it is sent in, is hidden wherever it appears.
func TestRedactorHidesEveryConfiguredSecret(t *testing.T) {
	t.Setenv("RW_HEADER", "env header value")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("token-from-file\n"), 0o600)
	cfg, err := Parse([]byte(`
[prosody]
metrics_url = "http://prosody:prosody-pw@127.0.0.1:5280/metrics?token=prosody-token"
[[influx]]
url = "http://admin:url-pw@influx:8086/write?db=s&p=query-p"
token = "influx token/with+specials"
username = "admin"
password = "influx-password"
[[influx]]
url = "http://influx:8086/api/v2/write?org=o&bucket=b"
token_file = "` + tokenFile + `"
[[remote_write]]
url = "http://prom:9090/api/v1/write?access_token=rw-access"
headers = { X-Api-Key = "header-key", X-Env = "${RW_HEADER}", X-Short = "abc" }
bearer_token = "bearer-token"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Redactor()
	for _, secret := range []string{
		"prosody-pw", "prosody-token", "url-pw", "query-p", "influx token/with+specials", "influx-password",
		"token-from-file", "rw-access", "header-key", "env header value", "bearer-token",
		"influx+token%2Fwith%2Bspecials",                                   // as a query parameter
		"influx%20token%2Fwith+specials",                                   // as a path
		base64.StdEncoding.EncodeToString([]byte("admin:influx-password")), // basic authentication
	} {
		text := "the backend answered: [" + secret + "]"
		if got := r.Redact(text); got != "the backend answered: [<secret>]" {
			t.Errorf("%q redacts to %q", text, got)
		}
	}
	if got := r.Redact("abc and admin at influx:8086"); got != "abc and admin at influx:8086" {
		t.Errorf("short values and names were hidden: %q", got)
	}
	if got := r.Redact("http://u:pw@h/w?p=x"); got != "http://u:xxxxx@h/w?p=xxxxx" {
		t.Errorf("the Redactor does not hide URL credentials: %q", got)
	}
}
