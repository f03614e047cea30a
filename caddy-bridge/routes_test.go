package wakedock

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"go.uber.org/zap"
)

// routeHost serves GET /api/v1/routes/subscribe from a table the test sets,
// and hands every other path to a stubHost (the wake API).
type routeHost struct {
	srv  *httptest.Server
	wake *stubHost

	mu    sync.Mutex
	table wireRoutes
	subs  map[chan struct{}]struct{}

	subscribeCalls atomic.Int64
}

type testRoute struct{ host, service, upstream string }

func newRouteHost(t testing.TB, wake *stubHost) *routeHost {
	h := &routeHost{wake: wake, subs: map[chan struct{}]struct{}{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() {
		h.srv.CloseClientConnections()
		h.srv.Close()
	})
	return h
}

func (h *routeHost) URL() string { return h.srv.URL }

// set publishes a loaded table to every subscriber.
func (h *routeHost) set(routes ...testRoute) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := wireRoutes{Generation: h.table.Generation + 1, Loaded: true}
	for _, r := range routes {
		w.Routes = append(w.Routes, struct {
			Host      string   `json:"host"`
			Service   string   `json:"service"`
			Upstreams []string `json:"upstreams"`
		}{r.host, r.service, []string{r.upstream}})
	}
	h.table = w
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (h *routeHost) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/routes/subscribe" {
		h.wake.srv.Config.Handler.ServeHTTP(w, r)
		return
	}
	h.subscribeCalls.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		problemJSON(w, http.StatusUnauthorized, "unauthorized", "bad token")
		return
	}
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	send := func() bool {
		h.mu.Lock()
		b, _ := json.Marshal(h.table)
		h.mu.Unlock()
		if _, err := fmt.Fprintf(w, "event: routes\ndata: %s\n\n", b); err != nil {
			return false
		}
		w.(http.Flusher).Flush()
		return true
	}
	if !send() {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
			if !send() {
				return
			}
		}
	}
}

func (h *routeHost) dropSubscribers() { h.srv.CloseClientConnections() }

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"whoami.example.com":      "whoami.example.com",
		"WhoAmI.Example.com":      "whoami.example.com",
		"whoami.example.com:8080": "whoami.example.com",
		"whoami.example.com.":     "whoami.example.com",
		"[::1]:80":                "::1",
		"[::1]":                   "::1",
	} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = normalizeHost("whoami.example.com:8080") }); n != 0 {
		t.Errorf("normalizeHost allocates %v times for a normal name", n)
	}
}

func TestRouteConnFollowsTheHostsTable(t *testing.T) {
	rh := newRouteHost(t, newStubHost(t))
	rc := newRouteConn(rh.URL(), testToken, zap.NewNop())
	defer rc.Destruct()

	if _, ok := rc.lookup("a.example.com"); ok {
		t.Fatal("a table before the host sent one")
	}
	// The host sent its table but has not listed its engine yet: still
	// nothing to route.
	waitFor(t, 5*time.Second, "first routes event", rc.live.Load)
	if _, ok := rc.lookup("a.example.com"); ok {
		t.Fatal("an unloaded table was taken")
	}
	rh.set(testRoute{"a.example.com", "a", "a:80"})
	waitFor(t, 5*time.Second, "route a", func() bool { e, _ := rc.lookup("A.example.com:443"); return e != nil })
	e, _ := rc.lookup("a.example.com")
	if e.service != "a" || e.upstreams[0] != "a:80" {
		t.Fatalf("route %+v", e)
	}
	if !routedAnywhere("a.example.com") || routedAnywhere("b.example.com") {
		t.Fatal("routedAnywhere disagrees with the table")
	}

	// Removed on the host: gone here.
	rh.set(testRoute{"b.example.com", "", "b:80"})
	waitFor(t, 5*time.Second, "route a removed", func() bool { e, _ := rc.lookup("a.example.com"); return e == nil })

	// Subscription lost: the last table still serves, and is replaced
	// after the reconnect.
	rh.dropSubscribers()
	if e, ok := rc.lookup("b.example.com"); !ok || e == nil {
		t.Fatal("table dropped with the subscription")
	}
	rh.set(testRoute{"c.example.com", "c", "c:80"})
	waitFor(t, 10*time.Second, "route c after reconnect", func() bool { e, _ := rc.lookup("c.example.com"); return e != nil })
}

func TestRouteConnKeepsItsTableWhenTheHostHasNotListedYet(t *testing.T) {
	rh := newRouteHost(t, newStubHost(t))
	rc := newRouteConn(rh.URL(), testToken, zap.NewNop())
	defer rc.Destruct()
	rh.set(testRoute{"a.example.com", "a", "a:80"})
	waitFor(t, 5*time.Second, "route a", func() bool { e, _ := rc.lookup("a.example.com"); return e != nil })
	// A restarted host that has not listed its engine yet.
	rc.apply(&wireRoutes{Generation: 1, Loaded: false})
	if e, _ := rc.lookup("a.example.com"); e == nil {
		t.Fatal("an unloaded table replaced a good one")
	}
}

func TestPermissionAllowsOnlyRoutedNames(t *testing.T) {
	rh := newRouteHost(t, newStubHost(t))
	rc := newRouteConn(rh.URL(), testToken, zap.NewNop())
	defer rc.Destruct()
	rh.set(testRoute{"tls.example.com", "", "x:80"})
	waitFor(t, 5*time.Second, "route", func() bool { e, _ := rc.lookup("tls.example.com"); return e != nil })
	var p Permission
	if err := p.CertificateAllowed(context.Background(), "tls.example.com"); err != nil {
		t.Fatalf("routed name refused: %v", err)
	}
	if err := p.CertificateAllowed(context.Background(), "random.example.com"); err == nil {
		t.Fatal("unrouted name allowed")
	}
}

// TestCaddyRoutesIntegration: a real Caddy (caddytest, admin localhost:2999)
// with the shipped shape of the generated-sites block beside a
// hand-written site.
func TestCaddyRoutesIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("fixed ports (caddytest): run without -short, under the lock")
	}
	wake := newStubHost(t, svc("sleepy", "asleep", "blocking"))
	wake.wakeDelay.Store(int64(100 * time.Millisecond))
	rh := newRouteHost(t, wake)
	upstream := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	sleepy, plain := upstream("sleepy"), upstream("plain")
	rh.set(
		testRoute{"sleepy.localhost", "sleepy", sleepy},
		testRoute{"plain.localhost", "", plain},
		// A hand-written site has this name too: the hand-written one wins.
		testRoute{"hand.localhost", "", plain},
	)
	t.Setenv("WAKEDOCK_BRIDGE_TOKEN_IT", testToken)

	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
		admin localhost:2999
		http_port 29080
		https_port 29443
		auto_https off
		persist_config off
		default_bind 127.0.0.1
		grace_period 1ns
		skip_install_trust
	}
	http://hand.localhost:29080 {
		respond "hand-written"
	}
	http://:29080 {
		wakedock_routes %s {
			token {env.WAKEDOCK_BRIDGE_TOKEN_IT}
			activity_interval 100ms
		}
		reverse_proxy {
			dynamic wakedock
		}
	}
	`, rh.URL()), "caddyfile")
	if t.Failed() {
		return
	}
	waitFor(t, 5*time.Second, "route subscription", func() bool { return routedAnywhere("plain.localhost") })

	tester.AssertGetResponse("http://plain.localhost:29080/x", 200, "plain /x")
	if n := wake.wakeCalls.Load(); n != 0 {
		t.Fatalf("a plain route called wake %d times", n)
	}
	tester.AssertGetResponse("http://hand.localhost:29080/", 200, "hand-written")

	// Asleep: woken once, then proxied; then the hot path.
	tester.AssertGetResponse("http://sleepy.localhost:29080/a", 200, "sleepy /a")
	if n := wake.wakeCalls.Load(); n != 1 {
		t.Fatalf("wake calls %d, want 1", n)
	}
	tester.AssertGetResponse("http://sleepy.localhost:29080/b", 200, "sleepy /b")
	if n := wake.wakeCalls.Load(); n != 1 {
		t.Fatalf("wake calls %d after a hot request, want 1", n)
	}

	tester.AssertGetResponse("http://nobody.localhost:29080/", 404, "wakedock: no site for \"nobody.localhost\"\n")

	// The container is removed: its route is gone within the update.
	rh.set(testRoute{"plain.localhost", "", plain})
	waitFor(t, 5*time.Second, "route removed", func() bool { return !routedAnywhere("sleepy.localhost") })
	tester.AssertGetResponse("http://sleepy.localhost:29080/a", 404, "wakedock: no site for \"sleepy.localhost\"\n")
}

func TestRoutesUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    RoutesHandler
		wantErr string
	}{
		{
			name:  "full",
			input: "wakedock_routes http://wakedock:8000 {\n token {env.T}\n fail_mode open\n timeout 30s\n activity_interval 1s\n}",
			want: RoutesHandler{Host: "http://wakedock:8000", Token: "{env.T}", FailMode: "open",
				Timeout: caddy.Duration(30 * time.Second), ActivityInterval: caddy.Duration(time.Second)},
		},
		{name: "minimal", input: "wakedock_routes http://wakedock:8000", want: RoutesHandler{Host: "http://wakedock:8000"}},
		{name: "service refused", input: "wakedock_routes http://w:8000 {\n service x\n}", wantErr: "takes no service"},
		{name: "unknown", input: "wakedock_routes http://w:8000 {\n strategy dynamic\n}", wantErr: `unknown subdirective "strategy"`},
		{name: "bad fail_mode", input: "wakedock_routes http://w:8000 {\n fail_mode maybe\n}", wantErr: "fail_mode must be"},
		{name: "bad host", input: "wakedock_routes ftp://w", wantErr: "scheme must be http or https"},
		{name: "bad duration", input: "wakedock_routes http://w:8000 {\n timeout soon\n}", wantErr: "bad timeout"},
		{name: "no host", input: "wakedock_routes", wantErr: "wrong argument count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h RoutesHandler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Host != tc.want.Host || h.Token != tc.want.Token || h.FailMode != tc.want.FailMode ||
				h.Timeout != tc.want.Timeout || h.ActivityInterval != tc.want.ActivityInterval {
				t.Fatalf("got %+v, want %+v", h, tc.want)
			}
		})
	}
	var u RouteUpstreams
	if err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser("wakedock extra")); err == nil {
		t.Fatal("dynamic wakedock accepted an argument")
	}
	var p Permission
	if err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser("wakedock extra")); err == nil {
		t.Fatal("permission wakedock accepted an argument")
	}
}

func TestRouteUpstreamsWithoutARoute(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://x.example.com/", nil)
	if _, err := (RouteUpstreams{}).GetUpstreams(r); err == nil || !strings.Contains(err.Error(), "wakedock_routes") {
		t.Fatalf("err %v", err)
	}
}
