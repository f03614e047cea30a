package wakedock

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyIntegration loads a Caddyfile using the directive into a real
// Caddy instance (caddytest: admin on localhost:2999) and sends requests
// through it to a stub upstream and a stub host, all on loopback.
func TestCaddyIntegration(t *testing.T) {
	host := newStubHost(t, svc("whoami", "asleep", "blocking"), svc("dyn", "asleep", "dynamic"))
	host.wakeDelay.Store(int64(150 * time.Millisecond))
	upstreamSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from upstream %s", r.URL.Path)
	}))
	defer upstreamSrv.Close()
	upstreamAddr := strings.TrimPrefix(upstreamSrv.URL, "http://")
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
	http://whoami.localhost:29080 {
		wakedock %[1]s {
			service {labels.1}
			token {env.WAKEDOCK_BRIDGE_TOKEN_IT}
			activity_interval 100ms
		}
		reverse_proxy %[2]s
	}
	http://dyn.localhost:29080 {
		reverse_proxy %[2]s
		wakedock %[1]s {
			service dyn
			token {env.WAKEDOCK_BRIDGE_TOKEN_IT}
			fail_mode closed
			timeout 10s
		}
	}
	`, host.URL(), upstreamAddr), "caddyfile")
	if t.Failed() {
		return
	}

	// Cold: held until the wake call returns, then proxied.
	start := time.Now()
	tester.AssertGetResponse("http://whoami.localhost:29080/", 200, "hello from upstream /")
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("cold request took %s", took)
	}
	if n := host.wakeCalls.Load(); n != 1 {
		t.Fatalf("wake calls %d, want 1", n)
	}
	// Hot: no further host call.
	for range 5 {
		tester.AssertGetResponse("http://whoami.localhost:29080/again", 200, "hello from upstream /again")
	}
	if n := host.hostCalls(); n != 1 {
		t.Fatalf("host calls %d after hot requests, want 1", n)
	}
	waitFor(t, 5*time.Second, "activity report", func() bool {
		select {
		case b := <-host.activity:
			return b["whoami"].Requests > 0
		default:
			return false
		}
	})

	// Dynamic service: a browser gets the host's waiting page.
	req, _ := http.NewRequest(http.MethodGet, "http://dyn.localhost:29080/", nil)
	req.Header.Set("Accept", "text/html")
	resp, body := tester.AssertResponse(req, 200, stubPage)
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}

	// The page's event stream, proxied through Caddy with each event flushed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://dyn.localhost:29080/.wakedock/dyn/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	client := &http.Client{Transport: caddytest.CreateTestingTransport()}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: status %d: %s", resp.StatusCode, b)
	}
	host.events <- `{"state":"awake"}`
	got := make(chan string, 1)
	go func() {
		br := bufio.NewReader(resp.Body)
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
		if s != "event: progress\ndata: {\"state\":\"awake\"}\n\n" {
			t.Fatalf("event %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event not flushed through Caddy")
	}
	_ = body
}
