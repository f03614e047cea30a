package wakedock

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// addService makes the stub host know a new service and tells the
// subscribers, as the host does when a service is defined.
func (s *stubHost) addService(ss serviceState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[ss.Service] = ss
	data, _ := json.Marshal(ss)
	for ch := range s.subs {
		ch <- string(data)
	}
}

// entries counts the bridge's cache entries.
func entries(hc *hostConn) int {
	n := 0
	hc.entries.Range(func(_, _ any) bool { n++; return true })
	return n
}

// withHost is a request for / on a virtual host, with Caddy's replacer.
func withHost(host, path string) *http.Request {
	r := get(path)
	r.Host = host
	repl := caddyhttp.NewTestReplacer(r)
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

func TestUnknownNamesCostNothingOnceLive(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "dynamic"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "{http.request.host.labels.2}"})
	waitFor(t, 5*time.Second, "snapshot", h.host.live.Load)
	before := entries(h.host)
	up := &upstream{}
	for i := 0; i < 2000; i++ {
		name := fmt.Sprintf("rnd%d", i)
		for _, r := range []*http.Request{
			withHost(name+".apps.example", "/"),
			withHost(name+".apps.example", "/.wakedock/"+name+"/events"),
		} {
			if i%2 == 0 {
				r.Header.Set("Accept", "text/html") // a browser: the waiting page is not fetched either
			}
			w, err := serve(h, up, r)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != 404 || !strings.Contains(w.Body.String(), "unknown service") {
				t.Fatalf("%s: %d %q", r.Host, w.Code, w.Body.String())
			}
		}
	}
	if n := host.hostCalls(); n != 0 {
		t.Fatalf("%d host calls for unknown names", n)
	}
	if n := entries(h.host); n != before {
		t.Fatalf("cache grew from %d to %d entries", before, n)
	}
	if up.calls.Load() != 0 {
		t.Fatal("a request for an unknown name reached the upstream")
	}
	h.host.wakeMu.Lock()
	inflight := len(h.host.wakes)
	h.host.wakeMu.Unlock()
	if inflight != 0 {
		t.Fatalf("%d wake calls left behind", inflight)
	}
}

func TestConfiguredNameTheHostLacksIs404UntilReported(t *testing.T) {
	host := newStubHost(t, svc("whoami", "awake", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "later"})
	waitFor(t, 5*time.Second, "snapshot", h.host.live.Load)
	up := &upstream{}
	w, _ := serve(h, up, get("/"))
	if w.Code != 404 || host.wakeCalls.Load() != 0 {
		t.Fatalf("status %d, wake calls %d; want 404 without a call", w.Code, host.wakeCalls.Load())
	}
	// The host defines it: its state event makes it wakeable at once.
	host.addService(svc("later", "asleep", "blocking"))
	waitState(t, h, "later", stateAsleep)
	w, _ = serve(h, up, get("/"))
	if w.Code != 200 || host.wakeCalls.Load() != 1 {
		t.Fatalf("status %d, wake calls %d; want the wake", w.Code, host.wakeCalls.Load())
	}
}

func TestUnknownNamesAskTheHostWhileTheSubscriptionIsDown(t *testing.T) {
	host := newStubHost(t)
	host.refuseSubs.Store(true)
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "{http.request.host.labels.2}"})
	waitFor(t, 5*time.Second, "a refused subscription", func() bool { return host.subscribeCalls.Load() > 0 })
	w, _ := serve(h, &upstream{}, withHost("nosuch.apps.example", "/"))
	// Without a live snapshot the bridge cannot know: the host answers.
	if w.Code != 404 || host.wakeCalls.Load() != 1 {
		t.Fatalf("status %d, wake calls %d; want the host's 404", w.Code, host.wakeCalls.Load())
	}
	if h.host.lookup("nosuch") != nil {
		t.Fatal("an unknown name got a cache entry")
	}
}

func TestAStateTheBridgeDoesNotKnowIsNotAbsent(t *testing.T) {
	host := newStubHost(t, svc("odd", "hibernating", "blocking"))
	h := newTestHandler(t, Handler{Host: host.URL(), Service: "odd"})
	waitFor(t, 5*time.Second, "snapshot", h.host.live.Load)
	w, _ := serve(h, &upstream{}, get("/"))
	if w.Code != 200 || host.wakeCalls.Load() != 1 {
		t.Fatalf("status %d, wake calls %d; want a wake call", w.Code, host.wakeCalls.Load())
	}
}

// BenchmarkUnknownName measures a request for a name the host never
// reported (a random subdomain on a wildcard site): answered from the
// snapshot.
func BenchmarkUnknownName(b *testing.B) {
	host := newStubHost(b, svc("whoami", "awake", "blocking"))
	h := newTestHandler(b, Handler{Host: host.URL(), Service: "{http.request.host.labels.2}", ActivityInterval: caddy.Duration(time.Hour)})
	waitFor(b, 5*time.Second, "snapshot", h.host.live.Load)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	r := withHost("nosuch.apps.example", "/")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := discardWriter{h: http.Header{}}
		_ = h.ServeHTTP(w, r, next)
	}
	b.StopTimer()
	if host.hostCalls() != 0 {
		b.Fatal("an unknown name called the host")
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
