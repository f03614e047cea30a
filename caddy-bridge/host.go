package wakedock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// hosts holds one hostConn per (host URL, token), shared by every handler
// instance (routes, sites, and the old and new config during a reload)
// that points at it. Provision takes a reference, Cleanup drops it; the
// last Cleanup stops the subscription and activity goroutines.
var hosts = caddy.NewUsagePool()

type hostKey struct {
	url   string
	token string
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// subscribeIdleTimeout: the host sends ": keepalive" every 15 s; a
	// stream silent for this long is taken as dead and reconnected.
	subscribeIdleTimeout = 45 * time.Second
	// hostCallTimeout bounds the short calls (page, activity).
	hostCallTimeout = 10 * time.Second
	maxBodySize     = 1 << 20
)

// hostConn is the bridge's connection to one WakeDock host: the state
// cache fed by the subscription, activity counters and batching, and the
// per-service single-flight wake calls.
type hostConn struct {
	base   string // host URL without trailing slash
	authz  string // "Bearer <token>", or "" without a token
	client *http.Client
	logger *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	entries sync.Map // service name -> *serviceEntry
	live    atomic.Bool

	interval   atomic.Int64 // activity interval, ns
	intervalCh chan struct{}

	wakeMu sync.Mutex
	wakes  map[string]*wakeCall

	// reporting state, only touched by the subscription goroutine
	lastSubErr string
	// unix nanos of the last "host unreachable" warning (rate limit)
	lastUnreachableLog atomic.Int64
}

// unreachableLogEvery rate-limits the per-request "host unreachable"
// warning (the subscription loop already reports the outage).
const unreachableLogEvery = 10 * time.Second

// shouldWarnUnreachable reports whether a "host unreachable" warning may
// be logged now; at most one per unreachableLogEvery.
func (hc *hostConn) shouldWarnUnreachable() bool {
	now := time.Now().UnixNano()
	last := hc.lastUnreachableLog.Load()
	if now-last < int64(unreachableLogEvery) {
		return false
	}
	return hc.lastUnreachableLog.CompareAndSwap(last, now)
}

func newHostConn(base, token string, interval time.Duration, logger *zap.Logger) *hostConn {
	ctx, cancel := context.WithCancel(context.Background())
	transport := &http.Transport{
		Proxy: nil, // the host is local or on a private network: never via HTTP(S)_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
	}
	hc := &hostConn{
		base:       base,
		client:     &http.Client{Transport: transport},
		logger:     logger,
		ctx:        ctx,
		cancel:     cancel,
		intervalCh: make(chan struct{}, 1),
		wakes:      make(map[string]*wakeCall),
	}
	if token != "" {
		hc.authz = "Bearer " + token
	}
	hc.interval.Store(int64(interval))
	hc.wg.Add(2)
	go hc.subscribeLoop()
	go hc.activityLoop()
	return hc
}

// Destruct implements caddy.Destructor: called when the last handler
// using this host is cleaned up.
func (hc *hostConn) Destruct() error {
	hc.cancel()
	hc.wg.Wait()
	hc.client.CloseIdleConnections()
	return nil
}

// useInterval lowers the activity interval to d if d is shorter (handlers
// sharing a host may ask for different intervals; the shortest wins).
func (hc *hostConn) useInterval(d time.Duration) {
	for {
		cur := hc.interval.Load()
		if int64(d) >= cur {
			return
		}
		if hc.interval.CompareAndSwap(cur, int64(d)) {
			select {
			case hc.intervalCh <- struct{}{}:
			default:
			}
			return
		}
	}
}

// entry returns the entry for a service, creating it. Only called for
// names from the configuration or from the host, so the map stays bounded.
func (hc *hostConn) entry(name string) *serviceEntry {
	if v, ok := hc.entries.Load(name); ok {
		return v.(*serviceEntry)
	}
	v, _ := hc.entries.LoadOrStore(name, &serviceEntry{name: name})
	return v.(*serviceEntry)
}

// absent reports whether the host does not have the service: the
// subscription is live and its snapshot and events never named it (an
// entry made for a configured name, or one dropped from a later snapshot,
// stays unknown). A request for it gets 404 without a host call.
func (hc *hostConn) absent(e *serviceEntry) bool {
	return svcState(e.state.Load()) == stateUnknown && hc.live.Load()
}

// lookup returns the entry for a service, or nil if unknown.
func (hc *hostConn) lookup(name string) *serviceEntry {
	if v, ok := hc.entries.Load(name); ok {
		return v.(*serviceEntry)
	}
	return nil
}

func (hc *hostConn) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, hc.base+path, body)
	if err != nil {
		return nil, err
	}
	if hc.authz != "" {
		req.Header.Set("Authorization", hc.authz)
	}
	return req, nil
}

func servicePath(service, suffix string) string {
	return "/api/v1/wake/" + url.PathEscape(service) + suffix
}

// ---------------------------------------------------------------------------
// Subscription

func (hc *hostConn) subscribeLoop() {
	defer hc.wg.Done()
	backoff := backoffMin
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		gotSnapshot, err := hc.subscribeOnce()
		hc.markStale()
		if hc.ctx.Err() != nil {
			return
		}
		if gotSnapshot {
			backoff = backoffMin
		}
		msg := "subscription closed"
		if err != nil {
			msg = err.Error()
		}
		if msg != hc.lastSubErr {
			hc.logger.Warn("wake subscription lost; state cache is stale until it is back",
				zap.String("host", hc.base), zap.String("error", msg), zap.Duration("retry_in", backoff))
			hc.lastSubErr = msg
		} else {
			hc.logger.Debug("wake subscription retry", zap.String("host", hc.base),
				zap.String("error", msg), zap.Duration("retry_in", backoff))
		}
		timer.Reset(backoff)
		select {
		case <-hc.ctx.Done():
			return
		case <-timer.C:
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// subscribeOnce runs one subscription connection until it ends. It reports
// whether a snapshot was received (the connection was healthy).
func (hc *hostConn) subscribeOnce() (gotSnapshot bool, err error) {
	ctx, cancel := context.WithCancel(hc.ctx)
	defer cancel()
	watchdog := time.AfterFunc(subscribeIdleTimeout, cancel)
	defer watchdog.Stop()

	req, err := hc.newRequest(ctx, http.MethodGet, "/api/v1/wake/subscribe", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("subscribe: %s", describeProblem(resp.StatusCode, readProblem(resp)))
	}
	sse := newSSEReader(resp.Body, func() { watchdog.Reset(subscribeIdleTimeout) })
	for {
		ev, err := sse.next()
		if err != nil {
			if ctx.Err() != nil && hc.ctx.Err() == nil {
				err = errors.New("subscription idle for too long")
			}
			return gotSnapshot, err
		}
		switch ev.name {
		case "snapshot":
			var snap snapshot
			if err := json.Unmarshal(ev.data, &snap); err != nil {
				return gotSnapshot, fmt.Errorf("bad snapshot: %w", err)
			}
			hc.applySnapshot(snap.Services)
			if !gotSnapshot && hc.lastSubErr != "" {
				hc.logger.Info("wake subscription restored", zap.String("host", hc.base))
			}
			hc.lastSubErr = ""
			gotSnapshot = true
		case "state":
			var ss serviceState
			if err := json.Unmarshal(ev.data, &ss); err != nil {
				hc.logger.Warn("bad state event from host", zap.Error(err))
				continue
			}
			if ss.Service != "" {
				hc.apply(&ss)
			}
		}
	}
}

func (hc *hostConn) applySnapshot(services []serviceState) {
	seen := make(map[string]struct{}, len(services))
	for i := range services {
		if services[i].Service == "" {
			continue
		}
		seen[services[i].Service] = struct{}{}
		hc.apply(&services[i])
	}
	// Services the host no longer knows: unknown, which once the
	// subscription is live means absent (404 without a host call).
	hc.entries.Range(func(k, v any) bool {
		if _, ok := seen[k.(string)]; !ok {
			hc.setState(v.(*serviceEntry), stateUnknown, "not in snapshot")
		}
		return true
	})
	hc.live.Store(true)
}

func (hc *hostConn) apply(ss *serviceState) {
	e := hc.entry(ss.Service)
	e.meta.Store(newServiceMeta(ss))
	reason := ""
	if ss.Reason != nil {
		reason = *ss.Reason
	}
	st := parseState(ss.State)
	if st == stateUnknown {
		// A state this bridge does not know yet: the host has the service,
		// so it must not look absent; the cold path asks the host.
		st = stateAsleep
	}
	hc.setState(e, st, reason)
}

func (hc *hostConn) setState(e *serviceEntry, s svcState, reason string) {
	old := svcState(e.state.Swap(int32(s)))
	if old != s {
		if c := hc.logger.Check(zap.DebugLevel, "service state"); c != nil {
			c.Write(zap.String("service", e.name), zap.Stringer("from", old),
				zap.Stringer("to", s), zap.String("reason", reason))
		}
	}
}

// markStale is called when the subscription is down: every cached state
// becomes unknown, so requests take the cold path (whose wake call answers
// at once when the service is in fact awake).
func (hc *hostConn) markStale() {
	hc.live.Store(false)
	hc.entries.Range(func(_, v any) bool {
		hc.setState(v.(*serviceEntry), stateUnknown, "subscription down")
		return true
	})
}

// markAwake records a successful wake call without waiting for the event.
func (hc *hostConn) markAwake(service string) {
	e := hc.entry(service) // the host knows it: it just woke it
	e.until.Store(time.Now().Add(staleAwakeTTL).UnixNano())
	if hc.live.Load() {
		hc.setState(e, stateAwake, "wake call succeeded")
		// markStale may have run between the check and the store.
		if !hc.live.Load() {
			hc.setState(e, stateAwakeUnconfirmed, "wake call succeeded, subscription down")
		}
		return
	}
	hc.setState(e, stateAwakeUnconfirmed, "wake call succeeded, subscription down")
}

// ---------------------------------------------------------------------------
// Activity

func (hc *hostConn) activityLoop() {
	defer hc.wg.Done()
	t := time.NewTicker(time.Duration(hc.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-hc.ctx.Done():
			return
		case <-hc.intervalCh:
			t.Reset(time.Duration(hc.interval.Load()))
		case <-t.C:
			hc.flushActivity()
		}
	}
}

// flushActivity sends one batch: every service with requests since the
// last batch or connections open now, and those whose connections all
// closed since the last batch (reported with 0 open, so the host stops
// holding them awake and starts their idle timer).
func (hc *hostConn) flushActivity() {
	batch := make(map[string]activityCounts)
	taken := make(map[*serviceEntry]int64)
	hc.entries.Range(func(_, v any) bool {
		e := v.(*serviceEntry)
		n := e.requests.Swap(0)
		open := e.open.Load()
		if n > 0 || open > 0 || e.reportedOpen.Load() > 0 {
			batch[e.name] = activityCounts{Requests: n, OpenConnections: open}
			taken[e] = n
		}
		return true
	})
	if len(batch) == 0 {
		return
	}
	body, err := json.Marshal(activityReport{Services: batch})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(hc.ctx, hostCallTimeout)
	defer cancel()
	err = hc.postActivity(ctx, body)
	if err == nil {
		for e := range taken {
			e.reportedOpen.Store(batch[e.name].OpenConnections)
		}
	}
	if err != nil {
		// keep the counts for the next batch
		for e, n := range taken {
			e.requests.Add(n)
		}
		hc.logger.Debug("activity report failed", zap.String("host", hc.base), zap.Error(err))
	}
}

func (hc *hostConn) postActivity(ctx context.Context, body []byte) error {
	req, err := hc.newRequest(ctx, http.MethodPost, "/api/v1/wake/activity", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New(describeProblem(resp.StatusCode, readProblem(resp)))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodySize))
	return nil
}

// ---------------------------------------------------------------------------
// Wake calls (single-flight per service)

type wakeOutcome int

const (
	wakeOK          wakeOutcome = iota
	wakeTimeout                 // the host answered 504, or our own bound passed
	wakeHostError               // the host answered an error status
	wakeUnreachable             // no answer from the host (connection error)
	wakeCanceled                // every waiter left before the answer
)

type wakeResult struct {
	outcome  wakeOutcome
	status   int      // host status, for wakeHostError/wakeTimeout from the host
	problem  *problem // host problem details, if any
	err      error
	waitedMS int64
}

// wakeCall is one in-flight wake call shared by every request waiting for
// the same service.
type wakeCall struct {
	done    chan struct{}
	res     wakeResult
	waiters int // guarded by hostConn.wakeMu
	cancel  context.CancelFunc
}

// joinWake returns the in-flight wake call for the service, starting one
// bounded by timeout if there is none, and counts the caller as a waiter.
func (hc *hostConn) joinWake(service string, timeout time.Duration) *wakeCall {
	hc.wakeMu.Lock()
	defer hc.wakeMu.Unlock()
	c := hc.wakes[service]
	if c == nil {
		// Detached from any one request: it serves every waiter.
		ctx, cancel := context.WithTimeout(hc.ctx, timeout)
		c = &wakeCall{done: make(chan struct{}), cancel: cancel}
		hc.wakes[service] = c
		go hc.runWake(ctx, service, c)
	}
	c.waiters++
	return c
}

// leaveWake drops a waiter; the last one to leave cancels the call.
func (hc *hostConn) leaveWake(service string, c *wakeCall) {
	hc.wakeMu.Lock()
	defer hc.wakeMu.Unlock()
	c.waiters--
	if c.waiters == 0 {
		c.cancel()
		if hc.wakes[service] == c {
			delete(hc.wakes, service) // a new request starts a fresh call
		}
	}
}

func (hc *hostConn) runWake(ctx context.Context, service string, c *wakeCall) {
	start := time.Now()
	res := hc.doWake(ctx, service)
	c.cancel()
	if res.outcome == wakeOK {
		hc.markAwake(service)
	}
	c.res = res
	hc.wakeMu.Lock()
	if hc.wakes[service] == c {
		delete(hc.wakes, service)
	}
	hc.wakeMu.Unlock()
	close(c.done)
	if ce := hc.logger.Check(zap.DebugLevel, "wake call done"); ce != nil {
		ce.Write(zap.String("service", service), zap.Int("outcome", int(res.outcome)),
			zap.Int("status", res.status), zap.Duration("took", time.Since(start)), zap.Error(res.err))
	}
}

// wake waits for the service to be woken: it joins (or starts) the
// single-flight call and waits for it, for ctx, or for timeout, whichever
// comes first. A caller that leaves early does not stop the call for the
// others.
func (hc *hostConn) wake(ctx context.Context, service string, timeout time.Duration) wakeResult {
	c := hc.joinWake(service, timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		hc.leaveWake(service, c)
		return wakeResult{outcome: wakeCanceled, err: ctx.Err()}
	case <-timer.C:
		hc.leaveWake(service, c)
		return wakeResult{outcome: wakeTimeout, err: context.DeadlineExceeded}
	}
}

// wakeBackground starts (or joins) the wake call without waiting; the call
// runs to its end, bounded by timeout.
func (hc *hostConn) wakeBackground(service string, timeout time.Duration) {
	hc.joinWake(service, timeout)
}

func (hc *hostConn) doWake(ctx context.Context, service string) wakeResult {
	req, err := hc.newRequest(ctx, http.MethodPost, servicePath(service, ""), nil)
	if err != nil {
		return wakeResult{outcome: wakeUnreachable, err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return wakeResult{outcome: wakeTimeout, err: err}
		case ctx.Err() != nil:
			return wakeResult{outcome: wakeCanceled, err: err}
		}
		return wakeResult{outcome: wakeUnreachable, err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		var ok woken
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxBodySize)).Decode(&ok)
		return wakeResult{outcome: wakeOK, status: resp.StatusCode, waitedMS: ok.WaitedMS}
	case resp.StatusCode == http.StatusGatewayTimeout:
		return wakeResult{outcome: wakeTimeout, status: resp.StatusCode, problem: readProblem(resp)}
	default:
		return wakeResult{outcome: wakeHostError, status: resp.StatusCode, problem: readProblem(resp)}
	}
}

// ---------------------------------------------------------------------------
// Waiting page and its event stream

// fetchPage gets the host's waiting page for a service.
func (hc *hostConn) fetchPage(r *http.Request, service string) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(r.Context(), hostCallTimeout)
	defer cancel()
	req, err := hc.newRequest(ctx, http.MethodGet, servicePath(service, "/page"), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/html")
	if al := r.Header.Get("Accept-Language"); al != "" {
		req.Header.Set("Accept-Language", al)
	}
	resp, err := hc.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize))
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}

// openEvents opens the host's wake-progress stream for a service, for as
// long as the client's request lasts.
func (hc *hostConn) openEvents(r *http.Request, service string) (*http.Response, error) {
	req, err := hc.newRequest(r.Context(), http.MethodGet, servicePath(service, "/events"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	return hc.client.Do(req)
}

// ---------------------------------------------------------------------------
// Problem details

// problem is the host's RFC 7807 problem+json body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// Per-field problems of an invalid service definition (never on the
	// bridge's routes, but part of the body).
	Errors []fieldProblem `json:"errors,omitempty"`
}

// fieldProblem names a service, a field and what is wrong with it.
type fieldProblem struct {
	Service string `json:"service"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func readProblem(resp *http.Response) *problem {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return decodeProblem(body)
}

// decodeProblem parses a problem+json body; nil if it is not one.
func decodeProblem(body []byte) *problem {
	var p problem
	if json.Unmarshal(body, &p) != nil {
		return nil
	}
	return &p
}

func describeProblem(status int, p *problem) string {
	s := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if p == nil {
		return s
	}
	if p.Code != "" {
		s += " (" + p.Code + ")"
	}
	switch {
	case p.Title != "" && p.Detail != "":
		s += ": " + p.Title + ": " + p.Detail
	case p.Detail != "":
		s += ": " + p.Detail
	case p.Title != "":
		s += ": " + p.Title
	}
	return s
}
