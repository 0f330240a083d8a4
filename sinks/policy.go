package sinks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/bits"
	"net"
	"strings"
	"time"
)

// Outcome is what one attempt to deliver a batch came to, as its transport
// classified the backend's answer. Transports only classify; what to do next
// is the Policy's decision, made in one place for every sink.
type Outcome uint8

// The outcomes of an attempt.
const (
	Delivered   Outcome = iota
	Unreachable         // connecting, writing or reading failed
	TimedOut            // the backend did not answer in time
	Throttled           // HTTP 429
	ServerError         // HTTP 5xx, and 408
	// Refused: the backend refused the batch's content (HTTP 400, 413,
	// 422; Prometheus' 500 for a too old sample). Some records are bad;
	// the others are good.
	Refused
	// PartlyStored: the backend stored the good records and refused the
	// others (an InfluxDB partial write). Sending it again would store
	// nothing more.
	PartlyStored
	// ConfigError: the backend refuses this sink's configuration (HTTP
	// 401, 403, 404: credentials, a missing database, a wrong URL). Only an
	// operator can mend it, so the data waits.
	ConfigError
	// Permanent: no attempt can succeed (a request that cannot be built).
	Permanent
	// Unsupported: the backend does not take a kind of record the sink's
	// configuration asks it to send (Prometheus 2.x without
	// --enable-feature=native-histograms answers 500 "native histograms
	// are disabled"). Only an operator can mend it, but unlike a
	// configuration error the other records are good, and every flush
	// would bring the same kind again: holding the batch would stall the
	// sink for good.
	Unsupported
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"delivered", "network", "timeout", "throttled", "server_error",
	"rejected", "partly_stored", "client_error", "permanent", "unsupported"}

// String is the outcome's name in self-metrics (the reason label of
// statsbridge_sink_failures_total).
func (o Outcome) String() string { return outcomeNames[o] }

// Failures lists the outcomes that are failed attempts.
func Failures() []Outcome {
	out := make([]Outcome, 0, numOutcomes-1)
	for o := Delivered + 1; o < numOutcomes; o++ {
		out = append(out, o)
	}
	return out
}

// Failure is a failed attempt as its transport classified it.
type Failure struct {
	Outcome Outcome
	// RetryAfter is the delay the backend asked for (Retry-After), or 0.
	RetryAfter time.Duration
	Err        error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// OutcomeOf reads a transport's error: nil is Delivered, a *Failure says
// itself, a timeout is TimedOut, and any other error is Unreachable.
func OutcomeOf(err error) (Outcome, time.Duration) {
	var f *Failure
	var ne net.Error
	switch {
	case err == nil:
		return Delivered, 0
	case errors.As(err, &f):
		return f.Outcome, f.RetryAfter
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return TimedOut, 0
	case certificateRefused(err):
		return ConfigError, 0
	}
	return Unreachable, 0
}

// certificateRefused reports whether a TLS handshake failed on a
// certificate: the backend's, which statsbridge does not trust (an unknown
// CA, another name, expired), or statsbridge's own, which the backend
// refused (the TLS alerts bad, unknown, expired or required certificate,
// unknown CA). Only an operator can mend either, as with a 401.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return true
	}
	// crypto/tls reports the backend's alert as a "remote error" whose
	// type it does not export; every certificate alert says "certificate".
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && strings.Contains(op.Err.Error(), "certificate")
}

// Policy is how a sink retries, after Prometheus' storage/remote queue
// manager (5xx, 429 and network errors are recoverable; other answers are
// not) and VictoriaMetrics' getRetryDuration (exponential backoff, with the
// backend's Retry-After honoured up to a cap).
type Policy struct {
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps a backend's Retry-After: a 429 asking for 60s
	// waits 60s, one asking for a day waits this long.
	MaxRetryAfter time.Duration
	// MaxRetryAge gives up a batch retried for longer (0: never). A
	// configuration error keeps its data whatever its age, and so does a
	// sink with a spool, which spool_size bounds instead.
	MaxRetryAge time.Duration
	Spooled     bool
}

// Action is what to do with the batch in hand.
type Action uint8

// The actions.
const (
	// Next: the batch is done (delivered, or stored in part); go on to the
	// next.
	Next Action = iota
	// Retry sends the batch again after Delay.
	Retry
	// Split sends the batch's two halves, to isolate its bad records.
	Split
	// Drop gives the batch up, for DropReason; the next one waits Delay.
	Drop
	// DropRest gives up the batch and every part left of the refused
	// batch it came from: the backend refuses everything, so bisecting on
	// would only hammer it. The next batch waits Delay.
	DropRest
	// Hold keeps the batch, for an operator to mend the configuration, and
	// sends it again after Delay.
	Hold
	// Strip sends the batch again at once without the records the backend
	// does not take (see Stripper), which are given up for Reason.
	Strip
)

// Attempt is what the policy knows of the attempt just made.
type Attempt struct {
	Outcome    Outcome
	RetryAfter time.Duration
	// Failures is how many attempts in a row, this one included, the sink
	// made without delivering anything.
	Failures int
	// Age is how long ago the batch was made.
	Age time.Duration
	// Records is how many records the batch in hand holds.
	Records int
	// Bisection is the refused batch the one in hand is part of, counting
	// this attempt; its Size is 0 outside a bisection.
	Bisection Bisection
}

// Bisection follows the splitting of one refused batch.
type Bisection struct {
	Size     int // records in the batch that was refused first
	Requests int // attempts made on it and its parts
	Accepted int // parts stored
	Found    int // single records refused, and dropped
}

// allowance is the attempts a bisection may make to find one bad record:
// one descent from the whole batch to a record and back up its siblings.
func (b Bisection) allowance() int { return 2 * (bits.Len(uint(b.Size)) + 1) }

// refusesEverything reports that a whole descent was refused: no part was
// stored in as many attempts as finding one bad record takes.
func (b Bisection) refusesEverything() bool {
	return b.Accepted == 0 && b.Requests >= b.allowance()
}

// overBudget reports that the bisection spent more than O(log n) attempts
// per bad record found.
func (b Bisection) overBudget() bool { return b.Requests >= (b.Found+1)*b.allowance() }

// Decision is the policy's answer.
type Decision struct {
	Action Action
	Delay  time.Duration
	Reason DropReason // for Drop and DropRest
}

// Decide is the retry policy: from the attempt just made to what to do
// next. jitter, in [0, 1), spreads backoff so that relays restarted
// together do not retry in step; it never shortens a Retry-After.
func (p Policy) Decide(a Attempt, jitter float64) Decision {
	switch a.Outcome {
	case Delivered, PartlyStored:
		return Decision{Action: Next}
	case Permanent:
		return Decision{Action: Drop, Reason: DropPermanent}
	case Refused:
		b := a.Bisection
		b.Size = max(b.Size, a.Records)
		// Past one descent's worth of failures in a row, the backend is
		// refusing more than a few bad records: back off.
		calm := p.backoff(a.Failures-b.allowance()+1, jitter)
		switch {
		case b.refusesEverything() || b.overBudget():
			return Decision{Action: DropRest, Reason: DropRejected, Delay: calm}
		case a.Records <= 1:
			return Decision{Action: Drop, Reason: DropRejected, Delay: calm}
		}
		return Decision{Action: Split}
	case ConfigError:
		return Decision{Action: Hold, Delay: p.retryDelay(a, jitter)}
	case Unsupported:
		return Decision{Action: Strip, Reason: DropUnsupported}
	}
	if !p.Spooled && p.MaxRetryAge > 0 && a.Age > p.MaxRetryAge {
		return Decision{Action: Drop, Reason: DropRetryAge}
	}
	return Decision{Action: Retry, Delay: p.retryDelay(a, jitter)}
}

// retryDelay is the backoff, or the backend's Retry-After (capped) when it
// asks for longer.
func (p Policy) retryDelay(a Attempt, jitter float64) time.Duration {
	d := p.backoff(a.Failures, jitter)
	if ra := min(a.RetryAfter, p.MaxRetryAfter); ra > d {
		d = ra
	}
	return d
}

// backoff doubles from MinBackoff for each failure past the first, up to
// MaxBackoff, and jitter takes up to half of it away. No failures, no wait.
func (p Policy) backoff(failures int, jitter float64) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := p.MaxBackoff
	if failures < 32 {
		d = min(p.MinBackoff<<(failures-1), p.MaxBackoff)
	}
	return d - time.Duration(float64(d/2)*jitter)
}
