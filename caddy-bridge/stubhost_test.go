package wakedock

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const testToken = "s3cret"

const stubPage = "<!doctype html><title>Waking</title><p>waking up</p>"

// stubHost implements the WakeDock host's wake API for tests.
type stubHost struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	services map[string]serviceState
	subs     map[chan string]struct{}

	// behaviour of POST /api/v1/wake/{service}
	wakeDelay   atomic.Int64 // ns
	wakeStatus  atomic.Int64 // 0: 200 (or 404 for unknown services)
	refuseSubs  atomic.Bool  // answer 503 to subscribe
	wakeAborted atomic.Int64 // wake calls whose client went away

	subscribeCalls atomic.Int64
	wakeCalls      atomic.Int64
	pageCalls      atomic.Int64
	eventsCalls    atomic.Int64
	eventsOpen     atomic.Int64
	activityCalls  atomic.Int64
	otherCalls     atomic.Int64
	badAuth        atomic.Int64

	activity chan map[string]activityCounts
	// events is sent on the waiting-page event stream, one per receive.
	events chan string
}

func newStubHost(t testing.TB, services ...serviceState) *stubHost {
	s := &stubHost{
		t:        t,
		services: map[string]serviceState{},
		subs:     map[chan string]struct{}{},
		activity: make(chan map[string]activityCounts, 1024),
		events:   make(chan string, 16),
	}
	for _, ss := range services {
		s.services[ss.Service] = ss
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.dropSubscribers()
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

func (s *stubHost) URL() string { return s.srv.URL }

// hostCalls counts every call the bridge made that a request caused
// (everything except the subscription and activity reports).
func (s *stubHost) hostCalls() int64 {
	return s.wakeCalls.Load() + s.pageCalls.Load() + s.eventsCalls.Load() + s.otherCalls.Load()
}

func problemJSON(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{
		Type: "https://wakedock.dev/problems/" + code, Title: http.StatusText(status),
		Status: status, Detail: detail, Code: code,
	})
}

func (s *stubHost) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		s.badAuth.Add(1)
		problemJSON(w, http.StatusUnauthorized, "unauthorized", "bad token")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/api/v1/wake/")
	switch {
	case p == "subscribe" && r.Method == http.MethodGet:
		s.subscribeCalls.Add(1)
		s.serveSubscribe(w, r)
	case p == "activity" && r.Method == http.MethodPost:
		s.activityCalls.Add(1)
		var body struct {
			Services map[string]activityCounts `json:"services"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			problemJSON(w, 400, "bad_request", err.Error())
			return
		}
		select {
		case s.activity <- body.Services:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	case strings.HasSuffix(p, "/page") && r.Method == http.MethodGet:
		s.pageCalls.Add(1)
		name := strings.TrimSuffix(p, "/page")
		if _, ok := s.service(name); !ok {
			problemJSON(w, 404, "unknown_service", "no service "+name)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(stubPage))
	case strings.HasSuffix(p, "/events") && r.Method == http.MethodGet:
		s.eventsCalls.Add(1)
		s.eventsOpen.Add(1)
		defer s.eventsOpen.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev, ok := <-s.events:
				if !ok {
					return
				}
				fmt.Fprintf(w, "event: progress\ndata: %s\n\n", ev)
				w.(http.Flusher).Flush()
			}
		}
	case r.Method == http.MethodPost && !strings.Contains(p, "/"):
		s.wakeCalls.Add(1)
		s.serveWake(w, r, p)
	default:
		s.otherCalls.Add(1)
		problemJSON(w, 404, "not_found", r.URL.Path)
	}
}

func (s *stubHost) service(name string) (serviceState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.services[name]
	return ss, ok
}

func (s *stubHost) serveWake(w http.ResponseWriter, r *http.Request, name string) {
	ss, ok := s.service(name)
	if !ok {
		problemJSON(w, 404, "unknown_service", "no service "+name)
		return
	}
	if d := time.Duration(s.wakeDelay.Load()); d > 0 && ss.State != "awake" {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			s.wakeAborted.Add(1)
			return
		}
	}
	switch st := int(s.wakeStatus.Load()); st {
	case 0, 200:
	case 504:
		problemJSON(w, 504, "wake_timeout", "not ready after 60000 ms")
		return
	default:
		problemJSON(w, st, "stub_error", "stub answered "+http.StatusText(st))
		return
	}
	s.setState(name, "awake")
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"service":%q,"state":"awake","waited_ms":5}`, name)
}

func (s *stubHost) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	if s.refuseSubs.Load() {
		problemJSON(w, 503, "docker_unavailable", "refusing subscriptions")
		return
	}
	ch := make(chan string, 64)
	s.mu.Lock()
	snap := struct {
		Services []serviceState `json:"services"`
	}{}
	for _, ss := range s.services {
		snap.Services = append(snap.Services, ss)
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	data, _ := json.Marshal(snap)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": hello\n\nevent: snapshot\ndata: %s\n\n", data)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			fmt.Fprintf(w, "event: state\ndata: %s\n\n: keepalive\n\n", ev)
			w.(http.Flusher).Flush()
		}
	}
}

// setState changes a service's state and tells every subscriber.
func (s *stubHost) setState(name, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.services[name]
	ss.State = state
	s.services[name] = ss
	data, _ := json.Marshal(ss)
	for ch := range s.subs {
		select {
		case ch <- string(data):
		default:
		}
	}
}

// dropSubscribers ends every open subscription stream.
func (s *stubHost) dropSubscribers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		close(ch)
		delete(s.subs, ch)
	}
}

func (s *stubHost) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// ---------------------------------------------------------------------------
// helpers

func svc(name, state, strategy string) serviceState {
	return serviceState{
		Service: name, State: state, Strategy: strategy, WakeTimeoutMS: 60000,
		IgnoreUserAgents: []string{"UptimeRobot"}, IgnorePaths: []string{"/healthz"},
		DisplayName: name,
	}
}

// newTestHandler provisions a handler the way Caddy does.
func newTestHandler(t testing.TB, h Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if h.Token == "" {
		h.Token = testToken
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return &h
}

// waitFor polls cond every 5 ms for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitState waits until the handler's cache holds the given state.
func waitState(t testing.TB, h *Handler, service string, want svcState) {
	t.Helper()
	waitFor(t, 5*time.Second, "state "+want.String()+" of "+service, func() bool {
		e := h.host.lookup(service)
		return e != nil && svcState(e.state.Load()) == want
	})
}

// upstream is a next handler that counts what reaches it.
type upstream struct {
	calls atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.calls.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("upstream"))
	return nil
}

var _ caddyhttp.Handler = (*upstream)(nil)

// serve runs one request through the handler.
func serve(h *Handler, next caddyhttp.Handler, r *http.Request) (*httptest.ResponseRecorder, error) {
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, next)
	return w, err
}

func get(path string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com"+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// deadURL is an http URL on loopback where nothing listens.
func deadURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
