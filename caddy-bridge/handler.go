// Package wakedock is a Caddy HTTP handler that wakes sleeping WakeDock
// services on the first request and keeps them awake while they are used.
//
// The handler keeps a local cache of every service's state, fed by one
// server-sent-event subscription per WakeDock host, so requests to an awake
// service go straight to the next handler with no call to the host. Only
// requests for a service that is not awake (or whose state is unknown) call
// the host: one single-flight wake call per service, shared by every
// request that waits for it.
package wakedock

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Fail modes: what to do when the WakeDock host cannot be reached.
const (
	FailClosed = "closed"
	FailOpen   = "open"
)

const (
	defaultWakeTimeout      = 60 * time.Second
	defaultActivityInterval = 2 * time.Second
	// hostTimeoutGrace is added to a wake timeout taken from the host, so
	// that the host's own 504 (with its details) normally arrives first.
	hostTimeoutGrace = time.Second
	// pagePrefix is the site path under which the waiting page's event
	// stream is proxied: /.wakedock/{service}/events.
	pagePrefix   = "/.wakedock/"
	eventsSuffix = "/events"
	retryAfter   = "5"
)

// Handler wakes a WakeDock service on demand. It must come before the
// handler that proxies to the service (the Caddyfile directive is ordered
// before reverse_proxy).
type Handler struct {
	// Base URL of the WakeDock host's API, e.g. http://127.0.0.1:8000.
	// Global placeholders such as {env.WAKEDOCK_URL} are replaced once.
	Host string `json:"host,omitempty"`

	// Name of the service to wake. Request placeholders are allowed, e.g.
	// {http.request.host.labels.2}; they are resolved per request.
	Service string `json:"service,omitempty"`

	// Bearer token for the host's bridge API. Global placeholders such as
	// {env.WAKEDOCK_BRIDGE_TOKEN} are replaced once.
	Token string `json:"token,omitempty"`

	// What to do when the host cannot be reached: "closed" (default)
	// answers 503 with Retry-After; "open" passes the request on.
	FailMode string `json:"fail_mode,omitempty"`

	// Longest time a held request waits for its service. Default: the
	// service's wake timeout as told by the host, else 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How often activity (request counts and open connections) is
	// reported to the host. Default 2s. Handlers sharing a host use the
	// shortest interval among them.
	ActivityInterval caddy.Duration `json:"activity_interval,omitempty"`

	host   *hostConn
	key    hostKey
	pooled bool
	entry  *serviceEntry // set when Service has no placeholder
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wakedock",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets up the handler and takes a reference to the shared
// connection to its host.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	base, err := resolveHostURL(repl, h.Host)
	if err != nil {
		return err
	}
	token := repl.ReplaceKnown(h.Token, "")
	if token == "" {
		h.logger.Warn("no token configured; the WakeDock host will likely refuse the bridge's calls", zap.String("host", base))
	}
	interval := time.Duration(h.ActivityInterval)
	if interval <= 0 {
		interval = defaultActivityInterval
	}
	h.key = hostKey{url: base, token: token}
	v, loaded, err := hosts.LoadOrNew(h.key, func() (caddy.Destructor, error) {
		return newHostConn(base, token, interval, caddy.Log().Named("http.handlers.wakedock.host")), nil
	})
	if err != nil {
		return err
	}
	h.pooled = true
	h.host = v.(*hostConn)
	if loaded {
		h.host.useInterval(interval)
	}
	if !strings.Contains(h.Service, "{") {
		h.entry = h.host.entry(h.Service)
	}
	return nil
}

// Validate checks the configuration (also for JSON configs).
func (h *Handler) Validate() error {
	if _, err := resolveHostURL(caddy.NewReplacer(), h.Host); err != nil {
		return err
	}
	if strings.TrimSpace(h.Service) == "" {
		return errors.New("service is required")
	}
	switch h.FailMode {
	case "", FailClosed, FailOpen:
	default:
		return fmt.Errorf("fail_mode must be %q or %q, not %q", FailClosed, FailOpen, h.FailMode)
	}
	if h.Timeout < 0 {
		return fmt.Errorf("timeout must be > 0, not %s", time.Duration(h.Timeout))
	}
	if h.ActivityInterval < 0 {
		return fmt.Errorf("activity_interval must be > 0, not %s", time.Duration(h.ActivityInterval))
	}
	return nil
}

// Cleanup drops the handler's reference to the shared host connection.
func (h *Handler) Cleanup() error {
	if !h.pooled {
		return nil
	}
	h.pooled = false
	_, err := hosts.Delete(h.key)
	return err
}

func resolveHostURL(repl *caddy.Replacer, raw string) (string, error) {
	if raw == "" {
		return "", errors.New("host URL is required")
	}
	s := repl.ReplaceKnown(raw, "")
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("host URL %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("host URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("host URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("host URL %q: must not have a query or fragment", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	e := h.entry
	var name string
	if e != nil {
		name = e.name
	} else {
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl == nil {
			repl = caddy.NewReplacer()
		}
		name = strings.TrimSpace(repl.ReplaceAll(h.Service, ""))
		if name == "" {
			return writeText(w, http.StatusNotFound, "", "wakedock: no service for this request\n")
		}
		e = h.host.lookup(name)
		if e == nil && h.host.live.Load() {
			// A name the host never reported (a random subdomain on a
			// wildcard site): answered here, no host call, no entry.
			return unknownService(w, name)
		}
	}

	if strings.HasPrefix(r.URL.Path, pagePrefix) {
		if e != nil && h.host.absent(e) {
			return unknownService(w, name)
		}
		return h.serveReserved(w, r, name)
	}

	var meta *serviceMeta
	if e != nil {
		meta = e.meta.Load()
		ignored := meta.ignores(r)
		if e.awake() {
			if ignored {
				return next.ServeHTTP(w, r) // passes, but is not activity
			}
			if err := serveAwake(e, w, r, next); err != nil {
				return h.hotPathFailed(e, w, r, next, name, meta, err)
			}
			return nil
		}
		if h.host.absent(e) {
			return unknownService(w, name)
		}
		if ignored {
			return writeText(w, http.StatusServiceUnavailable, retryAfter,
				"wakedock: service "+strconv.Quote(name)+" is asleep\n")
		}
	}
	return h.serveCold(w, r, next, name, meta)
}

// unknownService answers a request for a service the host does not have,
// without asking it (its live snapshot says so).
func unknownService(w http.ResponseWriter, name string) error {
	return writeText(w, http.StatusNotFound, "",
		"wakedock: unknown service "+strconv.Quote(name)+"\n")
}

// serveAwake is the hot path: count the request and keep the service's
// open-connection gauge up for as long as the next handler runs (for a
// WebSocket or a streamed response, as long as the stream stays open).
func serveAwake(e *serviceEntry, w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	e.requests.Add(1)
	e.open.Add(1)
	defer e.open.Add(-1)
	return next.ServeHTTP(w, r)
}

// waitTimeout is how long a held request waits for its service.
func (h *Handler) waitTimeout(meta *serviceMeta) time.Duration {
	if h.Timeout > 0 {
		return time.Duration(h.Timeout)
	}
	if meta != nil && meta.wakeTimeout > 0 {
		return meta.wakeTimeout + hostTimeoutGrace
	}
	return defaultWakeTimeout
}

func isBrowser(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// serveCold handles a request for a service that is not known to be
// awake: the waiting page for browsers of dynamic services, otherwise the
// request is held until the single-flight wake call answers.
func (h *Handler) serveCold(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, name string, meta *serviceMeta) error {
	timeout := h.waitTimeout(meta)
	if meta != nil && meta.dynamic && isBrowser(r) {
		h.host.wakeBackground(name, timeout)
		return h.servePage(w, r, next, name)
	}

	res := h.host.wake(r.Context(), name, timeout)
	switch res.outcome {
	case wakeOK:
		if e := h.host.lookup(name); e != nil {
			return serveAwake(e, w, r, next)
		}
		return next.ServeHTTP(w, r)
	case wakeCanceled:
		if r.Context().Err() != nil {
			// The client left: nothing to answer (499 as reverse_proxy does).
			return caddyhttp.Error(499, r.Context().Err())
		}
		return writeText(w, http.StatusServiceUnavailable, retryAfter,
			"wakedock: wake of "+strconv.Quote(name)+" was cancelled\n")
	case wakeTimeout:
		msg := fmt.Sprintf("wakedock: service %q did not become ready within %s\n", name, timeout)
		if res.problem != nil && res.problem.Detail != "" {
			msg = fmt.Sprintf("wakedock: service %q did not become ready in time: %s\n", name, res.problem.Detail)
		}
		return writeText(w, http.StatusGatewayTimeout, "", msg)
	case wakeHostError:
		return h.passHostError(w, name, res.status, res.problem)
	default: // wakeUnreachable
		return h.hostUnreachable(w, r, next, name, res.err)
	}
}

// servePage answers a browser with the host's waiting page.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, name string) error {
	resp, body, err := h.host.fetchPage(r, name)
	if err != nil {
		if r.Context().Err() != nil {
			return caddyhttp.Error(499, r.Context().Err())
		}
		return h.hostUnreachable(w, r, next, name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return h.passHostError(w, name, resp.StatusCode, decodeProblem(body))
	}
	hdr := hostHeaders(w, resp, "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// hostHeaders sets the headers of a response relayed from the host: its
// content type (fallback if it sent none), never cached.
func hostHeaders(w http.ResponseWriter, resp *http.Response, fallback string) http.Header {
	hdr := w.Header()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = fallback
	}
	hdr.Set("Content-Type", ct)
	hdr.Set("Cache-Control", "no-store")
	return hdr
}

// serveReserved handles the /.wakedock/ path space: the waiting page's
// event stream for this request's own service, nothing else.
func (h *Handler) serveReserved(w http.ResponseWriter, r *http.Request, name string) error {
	rest := r.URL.Path[len(pagePrefix):]
	if !strings.HasPrefix(rest, name) || rest[len(name):] != eventsSuffix {
		return writeText(w, http.StatusNotFound, "", "wakedock: not found\n")
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return writeText(w, http.StatusMethodNotAllowed, "", "wakedock: method not allowed\n")
	}
	return h.proxyEvents(w, r, name)
}

// proxyEvents streams the host's wake-progress events to the client,
// flushing every chunk as it arrives, until either side goes away.
func (h *Handler) proxyEvents(w http.ResponseWriter, r *http.Request, name string) error {
	resp, err := h.host.openEvents(r, name)
	if err != nil {
		if r.Context().Err() != nil {
			return caddyhttp.Error(499, r.Context().Err())
		}
		return writeText(w, http.StatusServiceUnavailable, retryAfter, "wakedock: WakeDock host unreachable\n")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h.passHostError(w, name, resp.StatusCode, readProblem(resp))
	}
	hdr := hostHeaders(w, resp, "text/event-stream")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 8<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // client gone
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return nil
			}
		}
		if rerr != nil {
			return nil // host closed the stream, or the client left (context cancelled)
		}
	}
}

// passHostError answers with the host's error status and a short body
// (never turned into a 200).
func (h *Handler) passHostError(w http.ResponseWriter, name string, status int, p *problem) error {
	if status < 400 || status > 599 {
		status = http.StatusBadGateway
	}
	h.logger.Debug("host refused wake", zap.String("service", name), zap.String("answer", describeProblem(status, p)))
	ra := ""
	if status == http.StatusServiceUnavailable {
		ra = retryAfter
	}
	return writeText(w, status, ra, "wakedock: waking "+strconv.Quote(name)+" failed: "+describeProblem(status, p)+"\n")
}

// hostUnreachable applies the fail mode.
func (h *Handler) hostUnreachable(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, name string, err error) error {
	level := zap.DebugLevel
	if h.host.shouldWarnUnreachable() {
		level = zap.WarnLevel
	}
	if c := h.logger.Check(level, "WakeDock host unreachable"); c != nil {
		c.Write(zap.String("service", name), zap.String("host", h.host.base),
			zap.String("fail_mode", h.failMode()), zap.Error(err))
	}
	if h.FailMode == FailOpen {
		return next.ServeHTTP(w, r)
	}
	return writeText(w, http.StatusServiceUnavailable, retryAfter, "wakedock: WakeDock host unreachable; try again shortly\n")
}

func (h *Handler) failMode() string {
	if h.FailMode == "" {
		return FailClosed
	}
	return h.FailMode
}

func writeText(w http.ResponseWriter, status int, retryAfterSecs, msg string) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Del("Content-Length")
	if retryAfterSecs != "" {
		hdr.Set("Retry-After", retryAfterSecs)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg) // an error means the client left: nothing more to say
	return nil
}

// Interface guards
var (
	_ caddy.Module                = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
