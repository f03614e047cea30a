package wakedock

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission is an on-demand TLS permission module: a certificate may be
// obtained for a name only while a WakeDock route (a container labelled
// wakedock.host) has it, so random SNI names cannot make Caddy ask an ACME
// CA for certificates. It reads the route tables the wakedock_routes
// handlers in this Caddy already hold: no call to the host.
//
//	{
//	    on_demand_tls {
//	        permission wakedock
//	    }
//	}
type Permission struct{}

// CaddyModule returns the Caddy module information.
func (Permission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.wakedock",
		New: func() caddy.Module { return new(Permission) },
	}
}

// CertificateAllowed implements caddytls.OnDemandPermission.
func (Permission) CertificateAllowed(_ context.Context, name string) error {
	if routedAnywhere(name) {
		return nil
	}
	return fmt.Errorf("%q is not the host of any WakeDock route", name)
}

// UnmarshalCaddyfile: `permission wakedock` takes no options.
func (p *Permission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Module                = (*Permission)(nil)
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
