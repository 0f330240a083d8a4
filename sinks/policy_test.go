package sinks

import (
	"testing"
	"time"
)

func TestPolicyDecide(t *testing.T) {
	base := Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxRetryAfter: 5 * time.Minute,
		MaxRetryAge: 5 * time.Minute}
	spooled := base
	spooled.Spooled = true
	// A refused batch of 1,000 records: one descent to a record and back
	// up its siblings takes 2*(10+1) = 22 attempts.
	bisect := func(requests, accepted, found int) Bisection {
		return Bisection{Size: 1000, Requests: requests, Accepted: accepted, Found: found}
	}
	tests := []struct {
		name   string
		policy Policy
		a      Attempt
		jitter float64
		want   Decision
	}{
		{"delivered: next", base, Attempt{Outcome: Delivered, Records: 10}, 0, Decision{Action: Next}},
		{"stored in part: next, never resent", base, Attempt{Outcome: PartlyStored, Failures: 0, Records: 10}, 0,
			Decision{Action: Next}},
		{"permanent: drop", base, Attempt{Outcome: Permanent, Failures: 1, Records: 3}, 0,
			Decision{Action: Drop, Reason: DropPermanent}},

		{"network error: retry after the first backoff", base, Attempt{Outcome: Unreachable, Failures: 1}, 0,
			Decision{Action: Retry, Delay: 50 * time.Millisecond}},
		{"backoff doubles", base, Attempt{Outcome: TimedOut, Failures: 4}, 0,
			Decision{Action: Retry, Delay: 400 * time.Millisecond}},
		{"jitter takes up to half away", base, Attempt{Outcome: ServerError, Failures: 4}, 0.5,
			Decision{Action: Retry, Delay: 300 * time.Millisecond}},
		{"backoff stops at its cap", base, Attempt{Outcome: ServerError, Failures: 30}, 0,
			Decision{Action: Retry, Delay: 10 * time.Second}},
		{"backoff stops at its cap past any shift", base, Attempt{Outcome: ServerError, Failures: 1000}, 0,
			Decision{Action: Retry, Delay: 10 * time.Second}},
		{"429 asking for 60s waits 60s, past the backoff's cap", base,
			Attempt{Outcome: Throttled, RetryAfter: time.Minute, Failures: 1}, 0.9,
			Decision{Action: Retry, Delay: time.Minute}},
		{"a day's Retry-After waits max_retry_after", base,
			Attempt{Outcome: ServerError, RetryAfter: 24 * time.Hour, Failures: 1}, 0,
			Decision{Action: Retry, Delay: 5 * time.Minute}},
		{"a Retry-After shorter than the backoff waits the backoff", base,
			Attempt{Outcome: Throttled, RetryAfter: time.Second, Failures: 10}, 0,
			Decision{Action: Retry, Delay: 10 * time.Second}},
		{"past max_retry_age: drop", base, Attempt{Outcome: Unreachable, Failures: 9, Age: 6 * time.Minute}, 0,
			Decision{Action: Drop, Reason: DropRetryAge}},
		{"past max_retry_age with a spool: retry", spooled, Attempt{Outcome: Unreachable, Failures: 1, Age: time.Hour}, 0,
			Decision{Action: Retry, Delay: 50 * time.Millisecond}},
		{"max_retry_age 0: retry for ever", Policy{MinBackoff: time.Second, MaxBackoff: time.Second, MaxRetryAfter: time.Minute},
			Attempt{Outcome: Unreachable, Failures: 1, Age: time.Hour}, 0, Decision{Action: Retry, Delay: time.Second}},

		{"configuration error: hold, whatever its age", base,
			Attempt{Outcome: ConfigError, Failures: 2, Age: time.Hour}, 0,
			Decision{Action: Hold, Delay: 100 * time.Millisecond}},
		{"configuration error honours Retry-After", base,
			Attempt{Outcome: ConfigError, RetryAfter: 30 * time.Second, Failures: 1}, 0,
			Decision{Action: Hold, Delay: 30 * time.Second}},

		{"a kind of record the backend does not take (Prometheus without native histograms): strip them, send the rest at once",
			base, Attempt{Outcome: Unsupported, Failures: 3, Records: 40, Age: time.Hour}, 0.5,
			Decision{Action: Strip, Reason: DropUnsupported}},

		{"refused batch: split", base, Attempt{Outcome: Refused, Failures: 1, Records: 1000, Bisection: bisect(1, 0, 0)}, 0,
			Decision{Action: Split}},
		{"refused single record: drop it at once", base,
			Attempt{Outcome: Refused, Failures: 11, Records: 1, Bisection: bisect(11, 0, 0)}, 0,
			Decision{Action: Drop, Reason: DropRejected}},
		{"refused part after some were stored: split on", base,
			Attempt{Outcome: Refused, Failures: 1, Records: 2, Bisection: bisect(30, 5, 1)}, 0,
			Decision{Action: Split}},
		{"every part refused for a whole descent: drop the rest, back off", base,
			Attempt{Outcome: Refused, Failures: 22, Records: 8, Bisection: bisect(22, 0, 1)}, 0,
			Decision{Action: DropRest, Reason: DropRejected, Delay: 50 * time.Millisecond}},
		{"past O(log n) attempts per bad record: drop the rest", base,
			Attempt{Outcome: Refused, Failures: 1, Records: 4, Bisection: bisect(44, 20, 1)}, 0,
			Decision{Action: DropRest, Reason: DropRejected}},
		{"within the budget of the records found: split on", base,
			Attempt{Outcome: Refused, Failures: 1, Records: 4, Bisection: bisect(60, 30, 2)}, 0,
			Decision{Action: Split}},
		{"single-record batches all refused: back off once a descent's worth failed", base,
			Attempt{Outcome: Refused, Failures: 6, Records: 1, Bisection: Bisection{Size: 1, Requests: 1}}, 0,
			Decision{Action: Drop, Reason: DropRejected, Delay: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Decide(tt.a, tt.jitter); got != tt.want {
				t.Errorf("Decide(%+v) = %+v, want %+v", tt.a, got, tt.want)
			}
		})
	}
}
