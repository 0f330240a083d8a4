package config

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// hidden replaces a URL's password and a secret query parameter's value:
// what net/url's Redacted writes.
const hidden = "xxxxx"

// Redact hides the credentials that URLs quoted anywhere in text carry: the
// password of a URL's user information, and the value of every query
// parameter whose name is secret-like (see secretParam). Everything else is
// left as written, so that an error still says where it went wrong. The
// URLs need not parse: errors quote the ones that do not.
func Redact(text string) string {
	if !strings.Contains(text, "@") && !strings.Contains(text, "=") {
		return text // the common case: nothing to look at
	}
	for from := 0; ; {
		i := strings.Index(text[from:], "://")
		if i < 0 {
			break
		}
		authority := from + i + len("://")
		text = redactUserinfo(text, authority)
		from = authority
	}
	return redactParams(text)
}

// RedactURL hides the credentials of raw, one URL as written in a
// configuration, even one without a scheme ("user:pw@host/...").
func RedactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		raw = redactUserinfo(raw, 0)
	}
	return Redact(raw)
}

// redactUserinfo hides the password of the user information in the URL
// authority that starts at text[start:]. The authority is taken to run to
// the query, the fragment or the end of the URL, not to the path: a
// password with a '/' in it, which does not parse, is hidden too.
func redactUserinfo(text string, start int) string {
	end := start
	for end < len(text) && !endsURL(text[end]) && text[end] != '?' && text[end] != '#' {
		end++
	}
	at := strings.LastIndexByte(text[start:end], '@')
	if at < 0 {
		return text
	}
	colon := strings.IndexByte(text[start:start+at], ':')
	if colon < 0 {
		return text // a user name alone
	}
	return text[:start+colon+1] + hidden + text[start+at:]
}

// redactParams hides the value of every secret-like parameter that follows
// a '?' or a '&' in text.
func redactParams(text string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(text); i++ {
		if text[i] != '?' && text[i] != '&' {
			continue
		}
		eq := i + 1
		for eq < len(text) && !endsURL(text[eq]) && !strings.ContainsRune("=?&#", rune(text[eq])) {
			eq++
		}
		if eq == i+1 || eq == len(text) || text[eq] != '=' || !secretParam(text[i+1:eq]) {
			continue
		}
		end := eq + 1
		for end < len(text) && !endsURL(text[end]) && text[end] != '&' && text[end] != '#' {
			end++
		}
		if end == len(text) || isSpace(text[end]) {
			// Punctuation between a URL and a space is the sentence's
			// (a list of URLs is joined with ", "), as linkifiers read it.
			for end > eq+2 && strings.IndexByte(".,;:!)", text[end-1]) >= 0 {
				end--
			}
		}
		if end == eq+1 {
			continue // an empty value hides nothing
		}
		b.WriteString(text[last : eq+1])
		b.WriteString(hidden)
		last, i = end, end-1
	}
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// endsURL reports whether c ends a URL quoted in a text: a space, a quote
// (Go's %q writes URLs in double quotes), or the backslash of an escape.
func endsURL(c byte) bool {
	switch c {
	case '"', '\'', '`', '<', '>', '\\':
		return true
	}
	return isSpace(c)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// secretParam reports whether a query parameter of this name carries a
// credential: passwords (InfluxDB 1.x's p), tokens, API keys, signatures
// and credentials of signed URLs, in any case.
func secretParam(name string) bool {
	if unescaped, err := url.QueryUnescape(name); err == nil {
		name = unescaped
	}
	name = strings.ToLower(name)
	switch name {
	case "p", "pw", "pwd", "pass", "auth", "sig", "jwt":
		return true
	}
	for _, part := range []string{"token", "secret", "passw", "key", "signature", "credential", "authorization", "session"} {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}

// minSecretLen is the shortest configured secret hidden wherever it
// appears: shorter strings are common in any text, and hiding them would
// mangle every line.
const minSecretLen = 4

// Redactor hides what Redact does and, besides, every secret value of one
// configuration, in every form it is sent in, wherever it appears: a
// backend may echo a header or a URL in its answer.
type Redactor struct {
	secrets []string // longest first, so that no secret is half hidden by a shorter one inside it
}

// Redactor returns the Redactor of c's secrets.
func (c Config) Redactor() Redactor {
	seen := map[string]bool{}
	var r Redactor
	add := func(s string) {
		if len(s) < minSecretLen || seen[s] {
			return
		}
		seen[s] = true
		r.secrets = append(r.secrets, s)
		// The forms a value takes in a URL and in a quoted Go string.
		for _, form := range []string{url.QueryEscape(s), url.PathEscape(s), strings.Trim(strconv.Quote(s), `"`)} {
			if !seen[form] {
				seen[form] = true
				r.secrets = append(r.secrets, form)
			}
		}
	}
	addURL := func(raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if pw, ok := u.User.Password(); ok {
			add(pw)
		}
		for name, values := range u.Query() {
			if secretParam(name) {
				for _, v := range values {
					add(v)
				}
			}
		}
	}
	addURL(c.Prosody.MetricsURL)
	basicAuth := func(user string, password Secret) {
		if user != "" && password != "" {
			add(base64.StdEncoding.EncodeToString([]byte(user + ":" + password.Reveal())))
		}
	}
	for _, in := range c.Influx {
		addURL(in.URL)
		addURL(in.ProxyURL)
		add(in.Token.Reveal())
		add(in.Password.Reveal())
		basicAuth(in.Username, in.Password)
	}
	for _, rw := range c.RemoteWrite {
		addURL(rw.URL)
		addURL(rw.ProxyURL)
		add(rw.BearerToken.Reveal())
		add(rw.Password.Reveal())
		basicAuth(rw.Username, rw.Password)
		for _, v := range rw.Headers {
			add(v.Reveal())
		}
	}
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return r
}

// With returns a Redactor that hides the secrets of both: after a reload,
// those of the configuration before it too.
func (r Redactor) With(other Redactor) Redactor {
	seen := map[string]bool{}
	var out Redactor
	for _, s := range append(append([]string(nil), r.secrets...), other.secrets...) {
		if !seen[s] {
			seen[s] = true
			out.secrets = append(out.secrets, s)
		}
	}
	sort.SliceStable(out.secrets, func(i, j int) bool { return len(out.secrets[i]) > len(out.secrets[j]) })
	return out
}

// Redact hides URL credentials (see the function Redact) and then the
// configuration's secret values, each written as "<secret>".
func (r Redactor) Redact(text string) string {
	text = Redact(text)
	for _, s := range r.secrets {
		if strings.Contains(text, s) {
			text = strings.ReplaceAll(text, s, Secret(s).String())
		}
	}
	return text
}
