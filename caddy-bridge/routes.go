package wakedock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Routes from container labels: the WakeDock host streams its whole route
// table (GET /api/v1/routes/subscribe, one `routes` event on connect and
// after every change); the bridge keeps the latest copy and routes by Host
// header from it, with no host call on the request path.

// routeHosts holds one routeConn per (host URL, token), shared by every
// wakedock_routes handler (and the old and new config during a reload).
var routeHosts = caddy.NewUsagePool()

// liveRoutes is every routeConn in this process: the TLS permission module
// allows a certificate for a name any of them routes.
var liveRoutes sync.Map // *routeConn -> struct{}

// routeEntry is one site: the service to wake ("" for a plain proxy) and
// where to proxy.
type routeEntry struct {
	host      string
	service   string
	upstreams []string
}

// routeTable is immutable once published.
type routeTable struct {
	generation uint64
	routes     map[string]*routeEntry
}

// routeConn is the bridge's subscription to one host's route table.
type routeConn struct {
	base   string
	authz  string
	client *http.Client
	logger *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// nil until the host has sent a loaded table; kept while the
	// subscription is down (the containers have not gone anywhere).
	table atomic.Pointer[routeTable]
	live  atomic.Bool

	lastErr string // only touched by the subscription goroutine
}

func newRouteConn(base, token string, logger *zap.Logger) *routeConn {
	ctx, cancel := context.WithCancel(context.Background())
	rc := &routeConn{
		base: base,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
		}},
		logger: logger,
		ctx:    ctx,
		cancel: cancel,
	}
	if token != "" {
		rc.authz = "Bearer " + token
	}
	liveRoutes.Store(rc, struct{}{})
	rc.wg.Add(1)
	go rc.subscribeLoop()
	return rc
}

// Destruct implements caddy.Destructor: the last handler using this host
// is gone.
func (rc *routeConn) Destruct() error {
	liveRoutes.Delete(rc)
	rc.cancel()
	rc.wg.Wait()
	return nil
}

// lookup finds the route for a request's host (any case, with or without
// port or trailing dot). ok is false until a table has been received.
func (rc *routeConn) lookup(host string) (e *routeEntry, ok bool) {
	t := rc.table.Load()
	if t == nil {
		return nil, false
	}
	return t.routes[normalizeHost(host)], true
}

// normalizeHost strips a port and a trailing dot and lowercases, without
// allocating for the common already-normal name.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["), ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// wireRoutes is the body of a `routes` event.
type wireRoutes struct {
	Generation uint64 `json:"generation"`
	Loaded     bool   `json:"loaded"`
	Routes     []struct {
		Host      string   `json:"host"`
		Service   string   `json:"service"`
		Upstreams []string `json:"upstreams"`
	} `json:"routes"`
}

func (rc *routeConn) apply(w *wireRoutes) {
	if !w.Loaded {
		return // the host has not listed its engine yet: keep what we have
	}
	t := &routeTable{generation: w.Generation, routes: make(map[string]*routeEntry, len(w.Routes))}
	for _, r := range w.Routes {
		if r.Host == "" || len(r.Upstreams) == 0 {
			continue
		}
		h := normalizeHost(r.Host)
		t.routes[h] = &routeEntry{host: h, service: r.Service, upstreams: r.Upstreams}
	}
	old := rc.table.Swap(t)
	if c := rc.logger.Check(zap.DebugLevel, "route table"); c != nil {
		prev := 0
		if old != nil {
			prev = len(old.routes)
		}
		c.Write(zap.Uint64("generation", t.generation), zap.Int("routes", len(t.routes)), zap.Int("before", prev))
	}
}

func (rc *routeConn) subscribeLoop() {
	defer rc.wg.Done()
	backoff := backoffMin
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		got, err := rc.subscribeOnce()
		rc.live.Store(false)
		if rc.ctx.Err() != nil {
			return
		}
		if got {
			backoff = backoffMin
		}
		msg := "subscription closed"
		if err != nil {
			msg = err.Error()
		}
		if msg != rc.lastErr {
			rc.logger.Warn("route subscription lost; serving the last route table until it is back",
				zap.String("host", rc.base), zap.String("error", msg), zap.Duration("retry_in", backoff))
			rc.lastErr = msg
		}
		timer.Reset(backoff)
		select {
		case <-rc.ctx.Done():
			return
		case <-timer.C:
		}
		backoff = min(backoff*2, backoffMax)
	}
}

func (rc *routeConn) subscribeOnce() (got bool, err error) {
	ctx, cancel := context.WithCancel(rc.ctx)
	defer cancel()
	watchdog := time.AfterFunc(subscribeIdleTimeout, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.base+"/api/v1/routes/subscribe", nil)
	if err != nil {
		return false, err
	}
	if rc.authz != "" {
		req.Header.Set("Authorization", rc.authz)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := rc.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("routes subscribe: %s", describeProblem(resp.StatusCode, readProblem(resp)))
	}
	sse := newSSEReader(resp.Body, func() { watchdog.Reset(subscribeIdleTimeout) })
	for {
		ev, err := sse.next()
		if err != nil {
			if ctx.Err() != nil && rc.ctx.Err() == nil {
				err = errors.New("route subscription idle for too long")
			}
			return got, err
		}
		if ev.name != "routes" {
			continue
		}
		var w wireRoutes
		if err := json.Unmarshal(ev.data, &w); err != nil {
			return got, fmt.Errorf("bad routes event: %w", err)
		}
		rc.apply(&w)
		rc.live.Store(true)
		if !got && rc.lastErr != "" {
			rc.logger.Info("route subscription restored", zap.String("host", rc.base))
			rc.lastErr = ""
		}
		got = true
	}
}

// routedAnywhere reports whether any route table in this process has name
// (for on-demand TLS).
func routedAnywhere(name string) bool {
	found := false
	liveRoutes.Range(func(k, _ any) bool {
		if e, _ := k.(*routeConn).lookup(name); e != nil {
			found = true
			return false
		}
		return true
	})
	return found
}
