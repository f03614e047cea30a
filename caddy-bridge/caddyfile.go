package wakedock

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The Caddyfile directive `wakedock`, ordered before reverse_proxy so a
// sleeping service is woken before the request is proxied to it.
func init() {
	httpcaddyfile.RegisterHandlerDirective("wakedock", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("wakedock", httpcaddyfile.Before, "reverse_proxy")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	wakedock <host_url> {
//	    # Required. The WakeDock service this site belongs to. Request
//	    # placeholders are allowed, e.g. {labels.2} or {http.request.host.labels.2}.
//	    service <name>
//
//	    # Bearer token for the host's bridge API, e.g. {env.WAKEDOCK_BRIDGE_TOKEN}.
//	    token <token>
//
//	    # When the host cannot be reached: closed (default) answers 503 with
//	    # Retry-After; open passes the request on to the next handler.
//	    fail_mode closed|open
//
//	    # Longest time a held request waits for its service. Default: the
//	    # service's wake timeout from the host, else 60s.
//	    timeout <duration>
//
//	    # How often activity is reported to the host, in batches. Default 2s.
//	    activity_interval <duration>
//	}
//
// <host_url> is the host's base URL (http or https), e.g.
// http://127.0.0.1:8000. The directive is ordered before reverse_proxy.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if !d.NextArg() {
		return d.ArgErr()
	}
	h.Host = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("%s specified more than once", sub)
		}
		seen[sub] = true
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch sub {
		case "service":
			h.Service = val
		case "token":
			h.Token = val
		case "fail_mode":
			if val != FailClosed && val != FailOpen {
				return d.Errf("fail_mode must be %s or %s, not %q", FailClosed, FailOpen, val)
			}
			h.FailMode = val
		case "timeout", "activity_interval":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("bad %s %q: %v", sub, val, err)
			}
			if dur <= 0 {
				return d.Errf("%s must be > 0, not %s", sub, val)
			}
			if sub == "timeout" {
				h.Timeout = caddy.Duration(dur)
			} else {
				h.ActivityInterval = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown subdirective %q", sub)
		}
	}
	if h.Service == "" {
		return d.Err("wakedock: the service subdirective is required")
	}
	return nil
}

func parseCaddyfile(helper httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var h Handler
	err := h.UnmarshalCaddyfile(helper.Dispenser)
	return &h, err
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
