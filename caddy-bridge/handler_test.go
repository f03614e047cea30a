package wakedock

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestHotPathMakesNoHostCalls(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(t, h, "whoami", stateAwake)

	up := &upstream{}
	for i := range 100 {
		w, err := serve(h, up, get("/x"))
		if err != nil || w.Code != 200 || w.Body.String() != "upstream" {
			t.Fatalf("request %d: code %d body %q err %v", i, w.Code, w.Body.String(), err)
		}
	}
	if n := host.hostCalls(); n != 0 {
		t.Fatalf("hot path made %d host calls, want 0", n)
	}
	if n := up.calls.Load(); n != 100 {
		t.Fatalf("upstream saw %d requests, want 100", n)
	}
	e := h.host.lookup("whoami")
	if got := e.requests.Load(); got != 100 {
		t.Fatalf("activity counter %d, want 100", got)
	}
	if got := e.open.Load(); got != 0 {
		t.Fatalf("open connections %d after all requests ended, want 0", got)
	}
}

func TestHotPathAllocations(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(t, h, "whoami", stateAwake)
	r := get("/x", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	allocs := testing.AllocsPerRun(1000, func() { _ = h.ServeHTTP(w, r, next) })
	if allocs != 0 {
		t.Fatalf("hot path allocates %.1f times per request, want 0", allocs)
	}
}

func TestColdBlockingSingleflight(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "blocking"))
	host.wakeDelay.Store(int64(300 * time.Millisecond))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAsleep)

	up := &upstream{}
	const n = 200
	var wg sync.WaitGroup
	codes := make([]int, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := serve(h, up, get("/api", "Accept", "application/json"))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			codes[i] = w.Code
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if got := host.wakeCalls.Load(); got != 1 {
		t.Fatalf("%d wake calls for %d concurrent cold requests, want 1", got, n)
	}
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if up.calls.Load() != n {
		t.Fatalf("upstream saw %d, want %d", up.calls.Load(), n)
	}
	// Held requests return when the wake call returns, not on a poll tick.
	if took > 2*time.Second {
		t.Fatalf("held requests took %s for a 300ms wake", took)
	}
	// The cache is awake at once, without waiting for the event.
	if !h.host.lookup("whoami").awake() {
		t.Fatal("service not marked awake after a successful wake")
	}
	// next request: hot path
	before := host.hostCalls()
	if w, _ := serve(h, up, get("/api")); w.Code != 200 {
		t.Fatalf("after wake: %d", w.Code)
	}
	if host.hostCalls() != before {
		t.Fatal("request after wake called the host")
	}
}

func TestDynamicStrategy(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		accept   string
		wantPage bool
	}{
		{"browser GET gets page", http.MethodGet, browserAccept, true},
		{"json client is held", http.MethodGet, "application/json", false},
		{"no accept is held", http.MethodGet, "", false},
		{"browser POST is held", http.MethodPost, browserAccept, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newStubHost(t, svc("whoami", "asleep", "dynamic"))
			host.wakeDelay.Store(int64(100 * time.Millisecond))
			h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
			waitState(t, h, "whoami", stateAsleep)
			up := &upstream{}
			r := httptest.NewRequest(tt.method, "http://app.example.com/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w, err := serve(h, up, r)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			if tt.wantPage {
				if w.Body.String() != stubPage {
					t.Fatalf("body %q, want the waiting page", w.Body.String())
				}
				if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
					t.Fatalf("Cache-Control %q", cc)
				}
				if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
					t.Fatalf("Content-Type %q", w.Header().Get("Content-Type"))
				}
				if up.calls.Load() != 0 {
					t.Fatal("page request reached the upstream")
				}
				// the wake runs in the background
				waitFor(t, 5*time.Second, "background wake", func() bool {
					return host.wakeCalls.Load() == 1 && h.host.lookup("whoami").awake()
				})
			} else {
				if w.Body.String() != "upstream" {
					t.Fatalf("body %q, want upstream's", w.Body.String())
				}
				if host.pageCalls.Load() != 0 || host.wakeCalls.Load() != 1 {
					t.Fatalf("page calls %d, wake calls %d", host.pageCalls.Load(), host.wakeCalls.Load())
				}
			}
		})
	}
}

func TestIgnoredRequests(t *testing.T) {
	tests := []struct {
		name      string
		state     string
		path      string
		ua        string
		wantCode  int
		wantRetry bool
		wantNext  bool
	}{
		{"awake ignored UA passes", "awake", "/", "Mozilla/5.0 (compatible; UptimeRobot/2.0)", 200, false, true},
		{"awake ignored UA case-insensitive", "awake", "/", "uptimerobot", 200, false, true},
		{"awake ignored path passes", "awake", "/healthz/live", "curl/8", 200, false, true},
		{"asleep ignored UA 503", "asleep", "/", "UPTIMEROBOT/2.0", 503, true, false},
		{"asleep ignored path 503", "asleep", "/healthz", "curl/8", 503, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newStubHost(t, svc("whoami", tt.state, "blocking"))
			h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
			waitState(t, h, "whoami", parseState(tt.state))
			up := &upstream{}
			w, err := serve(h, up, get(tt.path, "User-Agent", tt.ua))
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.wantCode {
				t.Fatalf("status %d, want %d", w.Code, tt.wantCode)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.wantRetry {
				t.Fatalf("Retry-After present=%v", got)
			}
			if got := up.calls.Load() == 1; got != tt.wantNext {
				t.Fatalf("reached upstream=%v", got)
			}
			if host.wakeCalls.Load() != 0 {
				t.Fatal("ignored request woke the service")
			}
			e := h.host.lookup("whoami")
			if e.requests.Load() != 0 || e.open.Load() != 0 {
				t.Fatal("ignored request counted as activity")
			}
		})
	}
}

func TestWakeFailures(t *testing.T) {
	tests := []struct {
		name       string
		service    string
		hostStatus int
		delay      time.Duration
		timeout    time.Duration
		wantCode   int
		wantBody   string
	}{
		{"host 504", "whoami", 504, 0, 0, 504, "did not become ready"},
		{"own timeout", "whoami", 0, 3 * time.Second, 100 * time.Millisecond, 504, "did not become ready within 100ms"},
		{"host 500", "whoami", 500, 0, 0, 500, "stub_error"},
		{"host 503", "whoami", 503, 0, 0, 503, "stub_error"},
		{"host 404", "whoami", 404, 0, 0, 404, "stub_error"},
		{"not in the live snapshot", "nosuch", 0, 0, 0, 404, "unknown service \"nosuch\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newStubHost(t, svc("whoami", "asleep", "blocking"))
			host.wakeStatus.Store(int64(tt.hostStatus))
			host.wakeDelay.Store(int64(tt.delay))
			h := newTestHandler(t, Handler{Host: host.URL(), Service: tt.service, Timeout: caddy.Duration(tt.timeout)})
			waitFor(t, 5*time.Second, "snapshot", h.host.live.Load)
			up := &upstream{}
			w, err := serve(h, up, get("/", "Accept", "*/*"))
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.wantCode {
				t.Fatalf("status %d, want %d (body %q)", w.Code, tt.wantCode, w.Body.String())
			}
			if !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Fatalf("body %q does not mention %q", w.Body.String(), tt.wantBody)
			}
			if up.calls.Load() != 0 {
				t.Fatal("failed wake passed the request on")
			}
			if tt.wantCode == 503 && w.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}

func TestHostUnreachable(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		browser  bool
		strategy string
		wantCode int
		wantNext bool
	}{
		{"closed default", "", false, "blocking", 503, false},
		{"closed", FailClosed, false, "blocking", 503, false},
		{"open", FailOpen, false, "blocking", 200, true},
		{"closed browser", FailClosed, true, "dynamic", 503, false},
		{"open browser", FailOpen, true, "dynamic", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler(t, Handler{Host: deadURL(t), Service: "whoami", FailMode: tt.mode})
			up := &upstream{}
			r := get("/")
			if tt.browser {
				r.Header.Set("Accept", browserAccept)
			}
			w, err := serve(h, up, r)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.wantCode {
				t.Fatalf("status %d, want %d", w.Code, tt.wantCode)
			}
			if tt.wantCode == 503 && w.Header().Get("Retry-After") != "5" {
				t.Fatalf("Retry-After %q, want 5", w.Header().Get("Retry-After"))
			}
			if got := up.calls.Load() == 1; got != tt.wantNext {
				t.Fatalf("reached upstream=%v", got)
			}
		})
	}
}

func TestClientDisconnectCancelsWait(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "blocking"))
	host.wakeDelay.Store(int64(5 * time.Second))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAsleep)

	ctx, cancel := context.WithCancel(context.Background())
	r := get("/").WithContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := serve(h, &upstream{}, r)
		done <- err
	}()
	waitFor(t, 5*time.Second, "wake call to start", func() bool { return host.wakeCalls.Load() == 1 })
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != 499 {
			t.Fatalf("err %v, want a 499 handler error", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("cancelled request kept waiting")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("request did not stop waiting after its client left")
	}
	// It was the only waiter: the shared call is cancelled too.
	waitFor(t, 3*time.Second, "wake call to be aborted", func() bool { return host.wakeAborted.Load() == 1 })
}

func TestClientDisconnectKeepsCallForOthers(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "blocking"))
	host.wakeDelay.Store(int64(300 * time.Millisecond))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAsleep)

	ctx, cancel := context.WithCancel(context.Background())
	leaver := make(chan error, 1)
	go func() {
		_, err := serve(h, &upstream{}, get("/").WithContext(ctx))
		leaver <- err
	}()
	waitFor(t, 5*time.Second, "wake call to start", func() bool { return host.wakeCalls.Load() == 1 })
	stayer := make(chan int, 1)
	go func() {
		w, _ := serve(h, &upstream{}, get("/"))
		stayer <- w.Code
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-leaver
	select {
	case code := <-stayer:
		if code != 200 {
			t.Fatalf("remaining waiter got %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("remaining waiter never answered")
	}
	if host.wakeCalls.Load() != 1 || host.wakeAborted.Load() != 0 {
		t.Fatalf("wake calls %d aborted %d, want 1 and 0", host.wakeCalls.Load(), host.wakeAborted.Load())
	}
}

func TestActivityBatching(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(50 * time.Millisecond)})
	waitState(t, h, "whoami", stateAwake)

	up := &upstream{}
	for range 12 {
		serve(h, up, get("/"))
	}
	// ignored ones are not counted
	serve(h, up, get("/healthz"))
	var total int64
	waitFor(t, 5*time.Second, "12 requests reported", func() bool {
		for {
			select {
			case b := <-host.activity:
				total += b["whoami"].Requests
			default:
				return total == 12
			}
		}
	})
	// idle: no reports
	time.Sleep(150 * time.Millisecond)
	drain(host.activity)
	before := host.activityCalls.Load()
	time.Sleep(200 * time.Millisecond)
	if n := host.activityCalls.Load() - before; n != 0 {
		t.Fatalf("%d activity reports while idle, want 0", n)
	}

	// An open SSE response keeps open_connections up across intervals.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			io.WriteString(w, "data: hi\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return nil
		}))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "data: hi\n" {
		t.Fatalf("stream said %q", line)
	}
	drain(host.activity)
	for i := range 2 {
		select {
		case b := <-host.activity:
			if b["whoami"].OpenConnections < 1 {
				t.Fatalf("report %d: open_connections %d while a stream is open", i, b["whoami"].OpenConnections)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no activity report %d while a stream is open", i)
		}
	}
	cancel()
	resp.Body.Close()
	waitFor(t, 3*time.Second, "stream to end", func() bool { return h.host.lookup("whoami").open.Load() == 0 })
	// Once it closed, one report says 0 open (ending the host's hold), then
	// no more reports.
	waitFor(t, 3*time.Second, "a closing report", func() bool {
		for {
			select {
			case b := <-host.activity:
				if c, ok := b["whoami"]; ok && c.OpenConnections == 0 {
					return true
				}
			default:
				return false
			}
		}
	})
	time.Sleep(150 * time.Millisecond)
	drain(host.activity)
	before = host.activityCalls.Load()
	time.Sleep(200 * time.Millisecond)
	if n := host.activityCalls.Load() - before; n != 0 {
		t.Fatalf("%d activity reports after the stream closed, want 0", n)
	}
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestEventsProxy(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "dynamic"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAsleep)
	up := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.ServeHTTP(w, r, up)
	}))
	defer srv.Close()

	// another service's stream, or anything else under /.wakedock/, is not served
	for _, p := range []string{"/.wakedock/other/events", "/.wakedock/whoami", "/.wakedock/whoami/eventsx"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/.wakedock/whoami/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for i, ev := range []string{`{"state":"waking"}`, `{"state":"awake"}`} {
		host.events <- ev
		// each event arrives on its own, while the stream stays open
		got := make(chan string, 1)
		go func() {
			var sb strings.Builder
			for {
				l, err := br.ReadString('\n')
				sb.WriteString(l)
				if err != nil || l == "\n" {
					break
				}
			}
			got <- sb.String()
		}()
		select {
		case s := <-got:
			want := "event: progress\ndata: " + ev + "\n\n"
			if s != want {
				t.Fatalf("event %d: %q, want %q", i, s, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("event %d was not flushed through", i)
		}
	}
	if up.calls.Load() != 0 || host.wakeCalls.Load() != 0 {
		t.Fatal("event stream reached the upstream or woke the service")
	}
	// The client leaving ends the host-side stream.
	cancel()
	waitFor(t, 3*time.Second, "host events stream to close", func() bool { return host.eventsOpen.Load() == 0 })
}

func TestStaleCacheTakesColdPath(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAwake)

	host.refuseSubs.Store(true)
	host.dropSubscribers()
	waitState(t, h, "whoami", stateUnknown)
	if h.host.live.Load() {
		t.Fatal("cache still live with the subscription down")
	}
	up := &upstream{}
	w, _ := serve(h, up, get("/"))
	if w.Code != 200 || host.wakeCalls.Load() != 1 {
		t.Fatalf("status %d, wake calls %d", w.Code, host.wakeCalls.Load())
	}
	// trusted for a while after the successful call
	if got := svcState(h.host.lookup("whoami").state.Load()); got != stateAwakeUnconfirmed {
		t.Fatalf("state %s after wake with the subscription down", got)
	}
	serve(h, up, get("/"))
	if host.wakeCalls.Load() != 1 {
		t.Fatal("second request called the host again")
	}
	// the subscription comes back: live again
	host.refuseSubs.Store(false)
	waitFor(t, 10*time.Second, "resubscribe", h.host.live.Load)
	waitState(t, h, "whoami", stateAwake)
}

func TestStateEventsUpdateCache(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami"})
	waitState(t, h, "whoami", stateAwake)
	for _, s := range []string{"going-to-sleep", "asleep", "waking", "failed", "awake"} {
		host.setState("whoami", s)
		waitState(t, h, "whoami", parseState(s))
	}
}

func TestSharedHostConnection(t *testing.T) {
	host := newStubHost(t, svc("a", "awake", "blocking"), svc("b", "asleep", "blocking"))
	h1 := newTestHandler(t, Handler{Host: host.URL(), Service: "a"})
	h2 := newTestHandler(t, Handler{Host: host.URL() + "/", Service: "b"})
	waitState(t, h1, "a", stateAwake)
	if h1.host != h2.host {
		t.Fatal("two handlers for one host got two connections")
	}
	time.Sleep(100 * time.Millisecond)
	if n := host.subscribeCalls.Load(); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	_ = h1.Cleanup()
	if host.subscribers() != 1 {
		t.Fatal("subscription closed while a handler still uses it")
	}
	_ = h2.Cleanup()
	waitFor(t, 3*time.Second, "subscription to close", func() bool { return host.subscribers() == 0 })
}

func TestPlaceholderService(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "{http.request.host.labels.2}", ActivityInterval: caddy.Duration(time.Hour)})
	waitFor(t, 5*time.Second, "snapshot", h.host.live.Load)

	tests := []struct {
		host     string
		wantCode int
	}{
		{"whoami.apps.example", 200}, // awake: hot path
		{"nosuch.apps.example", 404}, // never reported by the host: 404 from the snapshot
		{"apps.example", 404},        // no label: no service
	}
	for _, tt := range tests {
		r := get("/")
		r.Host = tt.host
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		w, err := serve(h, &upstream{}, r)
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != tt.wantCode {
			t.Fatalf("%s: status %d, want %d (%s)", tt.host, w.Code, tt.wantCode, w.Body.String())
		}
	}
	if host.hostCalls() != 0 {
		t.Fatalf("host calls %d, want 0", host.hostCalls())
	}
	if h.host.lookup("nosuch") != nil {
		t.Fatal("an unknown service name got a cache entry")
	}
	if h.host.lookup("whoami").requests.Load() != 1 {
		t.Fatal("placeholder request not counted")
	}
}

func TestBadTokenPassedOn(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", Token: "wrong"})
	w, _ := serve(h, &upstream{}, get("/"))
	if w.Code != 401 {
		t.Fatalf("status %d, want the host's 401", w.Code)
	}
}

func TestContainsFoldASCII(t *testing.T) {
	tests := []struct {
		s, sub string
		want   bool
	}{
		{"Mozilla/5.0 UptimeRobot/2.0", "uptimerobot", true},
		{"UPTIMEROBOT", "uptimerobot", true},
		{"uptime", "uptimerobot", false},
		{"", "x", false},
		{"abc", "", true},
		{"xxABC", "abc", true},
		{"aaab", "ab", true},
		{"AaAb", "ab", true},
		{"Ab", "ab", true},
		{"aB", "ab", true},
		{"a", "ab", false},
		{"ba", "ab", false},
		{"Mozilla/5.0 (compatible; Googlebot/2.1)", "googlebot", true},
		{"Mozilla/5.0 (compatible; Googlebo", "googlebot", false},
		{"x-/1.0", "-/1", true},
	}
	for _, tt := range tests {
		if got := containsFoldASCII(tt.s, tt.sub); got != tt.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", tt.s, tt.sub, got)
		}
	}
}

func TestSSEReader(t *testing.T) {
	in := ": keepalive\r\n\r\nevent: snapshot\r\ndata: {\"a\":\ndata: 1}\r\n\r\nid: 7\nevent: state\ndata:x\n\n: keepalive\n\n"
	lines := 0
	r := newSSEReader(strings.NewReader(in), func() { lines++ })
	ev, err := r.next()
	if err != nil || ev.name != "snapshot" || string(ev.data) != "{\"a\":\n1}" {
		t.Fatalf("first event %q %q %v", ev.name, ev.data, err)
	}
	ev, err = r.next()
	if err != nil || ev.name != "state" || string(ev.data) != "x" {
		t.Fatalf("second event %q %q %v", ev.name, ev.data, err)
	}
	if _, err = r.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if lines != 12 {
		t.Fatalf("onLine called %d times, want 12", lines)
	}
}

// BenchmarkHotPath measures the handler's own cost on an awake service
// against calling the next handler directly.
func BenchmarkHotPath(b *testing.B) {
	host := newStubHost(b, svc("whoami", "awake", "blocking"))
	h := newTestHandler(b, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(b, h, "whoami", stateAwake)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	r := get("/x", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
	w := httptest.NewRecorder()
	b.Run("next-only", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = next.ServeHTTP(w, r)
			}
		})
	})
	b.Run("wakedock", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = h.ServeHTTP(w, r, next)
			}
		})
	})
	if host.hostCalls() != 0 {
		b.Fatal("hot path called the host")
	}
}

// goneUpstream fails like reverse_proxy does when nothing listens on the
// upstream (a caddyhttp.HandlerError wrapping a reverseproxy.DialError)
// for its first `fail` calls, then answers.
type goneUpstream struct {
	fail  int64
	calls atomic.Int64
}

func (u *goneUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if u.calls.Add(1) <= u.fail {
		return caddyhttp.Error(http.StatusBadGateway,
			reverseproxy.NewDialError(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")))
	}
	_, _ = w.Write([]byte("upstream"))
	return nil
}

func TestAwakeServiceWhoseUpstreamIsGoneIsWoken(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(t, h, "whoami", stateAwake)
	// The container stopped; the host knows, its event has not arrived.
	host.mu.Lock()
	ss := host.services["whoami"]
	ss.State = "asleep"
	host.services["whoami"] = ss
	host.mu.Unlock()
	host.wakeDelay.Store(int64(50 * time.Millisecond))

	up := &goneUpstream{fail: 1}
	w, err := serve(h, up, get("/x", "Accept", "application/json"))
	if err != nil || w.Code != 200 || w.Body.String() != "upstream" {
		t.Fatalf("code %d body %q err %v, want the upstream's answer after a wake", w.Code, w.Body.String(), err)
	}
	if got := host.wakeCalls.Load(); got != 1 {
		t.Fatalf("%d wake calls, want 1", got)
	}
	if got := up.calls.Load(); got != 2 {
		t.Fatalf("next called %d times, want 2 (the failed dial, then after the wake)", got)
	}
	if !h.host.lookup("whoami").awake() {
		t.Fatal("not awake after the wake")
	}
}

func TestUpstreamStillGoneAfterTheWakeIsAnError(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(t, h, "whoami", stateAwake)
	up := &goneUpstream{fail: 100}
	_, err := serve(h, up, get("/x"))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway {
		t.Fatalf("err %v, want reverse_proxy's 502", err)
	}
	if got := up.calls.Load(); got != 2 {
		t.Fatalf("next called %d times, want 2 (one retry, no loop)", got)
	}
	if got := host.wakeCalls.Load(); got != 1 {
		t.Fatalf("%d wake calls, want 1", got)
	}
}

func TestOtherUpstreamErrorsPassThrough(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "whoami", ActivityInterval: caddy.Duration(time.Hour)})
	waitState(t, h, "whoami", stateAwake)
	boom := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusGatewayTimeout, errors.New("upstream too slow"))
	})
	if _, err := serve(h, boom, get("/x")); err == nil {
		t.Fatal("the error was swallowed")
	}
	if n := host.hostCalls(); n != 0 {
		t.Fatalf("%d host calls for a non-dial error, want 0", n)
	}
}
