package wakedock

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// hotPathFailed handles an error of the next handler for a service the
// bridge believes awake (the success path pays one nil check). If the
// next handler could not even connect to the upstream (reverse_proxy
// answers a caddyhttp.HandlerError wrapping a reverseproxy.DialError: the
// container stopped, and the host's event saying so has not arrived yet),
// nothing has been written, so the request takes the cold path instead of
// a 502: the service is woken and the request goes on, once.
func (h *Handler) hotPathFailed(e *serviceEntry, w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, name string, meta *serviceMeta, err error) error {
	if !isDialError(err) {
		return err
	}
	if c := h.logger.Check(zap.InfoLevel, "upstream of an awake service refused the connection; waking it"); c != nil {
		c.Write(zap.String("service", name), zap.Error(err))
	}
	// Until the host says otherwise, requests for it take the cold path.
	h.host.setState(e, stateAsleep, "upstream refused the connection")
	return h.serveCold(w, r, next, name, meta)
}

// isDialError reports whether err is reverse_proxy's failure to connect to
// its upstream (reverse_proxy keeps the request body intact in that case,
// so the request can be served again).
func isDialError(err error) bool {
	var de reverseproxy.DialError
	return errors.As(err, &de)
}
