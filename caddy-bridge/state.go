package wakedock

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// svcState is the cached state of one service, as last told by the host.
type svcState int32

const (
	// stateUnknown: never heard of, or the subscription is down (stale).
	stateUnknown svcState = iota
	stateAsleep
	stateWaking
	stateAwake
	stateGoingToSleep
	stateFailed
	// stateAwakeUnconfirmed: a wake call succeeded while the subscription
	// was down. It counts as awake only until serviceEntry.until, because
	// no event would tell us when the service goes back to sleep.
	stateAwakeUnconfirmed
)

// staleAwakeTTL is how long a successful wake call is trusted while the
// subscription is down.
const staleAwakeTTL = 5 * time.Second

func parseState(s string) svcState {
	switch s {
	case "asleep":
		return stateAsleep
	case "waking":
		return stateWaking
	case "awake":
		return stateAwake
	case "going-to-sleep":
		return stateGoingToSleep
	case "failed":
		return stateFailed
	}
	return stateUnknown
}

func (s svcState) String() string {
	switch s {
	case stateAsleep:
		return "asleep"
	case stateWaking:
		return "waking"
	case stateAwake:
		return "awake"
	case stateGoingToSleep:
		return "going-to-sleep"
	case stateFailed:
		return "failed"
	case stateAwakeUnconfirmed:
		return "awake-unconfirmed"
	}
	return "unknown"
}

// The wire types below mirror the host's, which are defined once in Rust
// (plugins/wake/src/contract.rs). contract_test.go decodes the golden files
// the Rust side writes (testdata/contract/) refusing unknown fields, so a
// field added or renamed on one side fails a test on the other.

// serviceState is the host's ServiceState document: the `state` events and
// the items of a snapshot.
type serviceState struct {
	Service          string   `json:"service"`
	State            string   `json:"state"` // see parseState
	Strategy         string   `json:"strategy"`
	WakeTimeoutMS    int64    `json:"wake_timeout_ms"`
	IgnoreUserAgents []string `json:"ignore_user_agents"`
	IgnorePaths      []string `json:"ignore_paths"`
	DisplayName      string   `json:"display_name"`
	// Why the service is failed, or why it went asleep on its own.
	Reason *string `json:"reason"`
	// The waiting page's theme (the host renders the page).
	Theme *string `json:"theme"`
	// Members' phases (waking progress, asleep, stopped outside WakeDock).
	Members []memberProgress `json:"members"`
	// Grows with every change of the service's state.
	Seq uint64 `json:"seq"`
}

// memberProgress is one member's phase in a serviceState.
type memberProgress struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// snapshot is the first event of the subscription: every service.
type snapshot struct {
	Services []serviceState `json:"services"`
}

// woken is the host's answer to a successful wake call.
type woken struct {
	Service  string `json:"service"`
	State    string `json:"state"` // always "awake"
	WaitedMS int64  `json:"waited_ms"`
}

// activityReport is the body of POST /api/v1/wake/activity.
type activityReport struct {
	Services map[string]activityCounts `json:"services"`
}

// activityCounts is one service's counts in an activityReport.
type activityCounts struct {
	Requests        int64 `json:"requests"`
	OpenConnections int64 `json:"open_connections"`
}

// serviceMeta is the immutable, pre-digested part of a ServiceState. A new
// one replaces the old one atomically on every update.
type serviceMeta struct {
	dynamic     bool
	wakeTimeout time.Duration
	ignoreUA    []string // lower-cased, non-empty
	ignorePaths []string // non-empty
	displayName string
}

func newServiceMeta(ss *serviceState) *serviceMeta {
	m := &serviceMeta{
		dynamic:     ss.Strategy == "dynamic",
		wakeTimeout: time.Duration(ss.WakeTimeoutMS) * time.Millisecond,
		displayName: ss.DisplayName,
	}
	for _, ua := range ss.IgnoreUserAgents {
		if ua != "" {
			m.ignoreUA = append(m.ignoreUA, strings.ToLower(ua))
		}
	}
	for _, p := range ss.IgnorePaths {
		if p != "" {
			m.ignorePaths = append(m.ignorePaths, p)
		}
	}
	return m
}

// ignores reports whether the request matches the service's ignore lists
// (path prefixes, case-insensitive user-agent substrings). It does not
// allocate.
func (m *serviceMeta) ignores(r *http.Request) bool {
	if m == nil {
		return false
	}
	if len(m.ignorePaths) > 0 {
		p := r.URL.Path
		for _, prefix := range m.ignorePaths {
			if strings.HasPrefix(p, prefix) {
				return true
			}
		}
	}
	if len(m.ignoreUA) > 0 {
		// The server canonicalises header names: index the map directly
		// rather than paying for Header.Get's canonicalisation.
		v := r.Header["User-Agent"]
		if len(v) == 0 || v[0] == "" {
			return false
		}
		ua := v[0]
		for _, sub := range m.ignoreUA {
			if containsFoldASCII(ua, sub) {
				return true
			}
		}
	}
	return false
}

// containsFoldASCII reports whether lowerSub (already lower-case) occurs in
// s, comparing ASCII letters case-insensitively, without allocating. The
// first byte is searched with strings.IndexByte (vectorised), so a typical
// user agent costs a few nanoseconds per pattern.
func containsFoldASCII(s, lowerSub string) bool {
	n := len(lowerSub)
	if n == 0 {
		return true
	}
	lo := lowerSub[0]
	up := lo
	if 'a' <= lo && lo <= 'z' {
		up = lo - ('a' - 'A')
	}
	for len(s) >= n {
		// candidates for the first byte, in either case
		window := s[:len(s)-n+1]
		i := strings.IndexByte(window, lo)
		if up != lo {
			if i >= 0 {
				window = window[:i]
			}
			if j := strings.IndexByte(window, up); j >= 0 {
				i = j
			}
		}
		if i < 0 {
			return false
		}
		if equalFoldASCII(s[i+1:i+n], lowerSub[1:]) {
			return true
		}
		s = s[i+1:]
	}
	return false
}

// equalFoldASCII reports whether s equals lower (already lower-case),
// folding ASCII letters in s. len(s) must equal len(lower).
func equalFoldASCII(s, lower string) bool {
	for j := 0; j < len(lower); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[j] {
			return false
		}
	}
	return true
}

// serviceEntry is everything the bridge keeps about one service. The hot
// path reads it with atomic loads only.
type serviceEntry struct {
	name  string
	state atomic.Int32 // svcState
	until atomic.Int64 // unix nanos; expiry of stateAwakeUnconfirmed
	meta  atomic.Pointer[serviceMeta]
	// The counters are written by every request: keep them off the cache
	// line of the read-mostly fields above.
	_        [64]byte
	requests atomic.Int64 // requests since the last activity report
	open     atomic.Int64 // requests being served right now (long-lived included)
	// reportedOpen is the open count of the last activity batch: once
	// connections close, one more report with 0 ends the host's hold.
	reportedOpen atomic.Int64
}

// awake reports whether requests may go straight to the upstream.
func (e *serviceEntry) awake() bool {
	switch svcState(e.state.Load()) {
	case stateAwake:
		return true
	case stateAwakeUnconfirmed:
		return time.Now().UnixNano() < e.until.Load()
	}
	return false
}
