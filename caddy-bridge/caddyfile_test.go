package wakedock

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    Handler
		wantErr string
	}{
		{
			name: "full",
			input: `wakedock http://127.0.0.1:8000 {
				service whoami
				token {env.WAKEDOCK_BRIDGE_TOKEN}
				fail_mode open
				timeout 30s
				activity_interval 500ms
			}`,
			want: Handler{
				Host: "http://127.0.0.1:8000", Service: "whoami", Token: "{env.WAKEDOCK_BRIDGE_TOKEN}",
				FailMode: "open", Timeout: caddy.Duration(30 * time.Second),
				ActivityInterval: caddy.Duration(500 * time.Millisecond),
			},
		},
		{
			name:  "minimal",
			input: "wakedock https://wakedock.internal:8443 {\n service whoami\n}",
			want:  Handler{Host: "https://wakedock.internal:8443", Service: "whoami"},
		},
		{
			name:  "placeholder service, closed mode",
			input: "wakedock http://[::1]:8000 {\n service {http.request.host.labels.2}\n fail_mode closed\n}",
			want:  Handler{Host: "http://[::1]:8000", Service: "{http.request.host.labels.2}", FailMode: "closed"},
		},
		{name: "missing service", input: "wakedock http://127.0.0.1:8000 {\n token x\n}", wantErr: "service subdirective is required"},
		{name: "no block", input: "wakedock http://127.0.0.1:8000", wantErr: "service subdirective is required"},
		{name: "missing host", input: "wakedock {\n service whoami\n}", wantErr: "wrong argument count"},
		{name: "extra args", input: "wakedock http://127.0.0.1:8000 extra {\n service whoami\n}", wantErr: "wrong argument count"},
		{name: "unknown subdirective", input: "wakedock http://127.0.0.1:8000 {\n service whoami\n strategy dynamic\n}", wantErr: `unknown subdirective "strategy"`},
		{name: "bad duration", input: "wakedock http://127.0.0.1:8000 {\n service whoami\n timeout soon\n}", wantErr: "bad timeout"},
		{name: "zero duration", input: "wakedock http://127.0.0.1:8000 {\n service whoami\n activity_interval 0s\n}", wantErr: "must be > 0"},
		{name: "negative duration", input: "wakedock http://127.0.0.1:8000 {\n service whoami\n timeout -1s\n}", wantErr: "must be > 0"},
		{name: "bad fail_mode", input: "wakedock http://127.0.0.1:8000 {\n service whoami\n fail_mode maybe\n}", wantErr: "fail_mode must be"},
		{name: "subdirective extra args", input: "wakedock http://127.0.0.1:8000 {\n service whoami other\n}", wantErr: "wrong argument count"},
		{name: "subdirective missing arg", input: "wakedock http://127.0.0.1:8000 {\n service\n}", wantErr: "wrong argument count"},
		{name: "duplicate subdirective", input: "wakedock http://127.0.0.1:8000 {\n service a\n service b\n}", wantErr: "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Host != tt.want.Host || h.Service != tt.want.Service || h.Token != tt.want.Token ||
				h.FailMode != tt.want.FailMode || h.Timeout != tt.want.Timeout || h.ActivityInterval != tt.want.ActivityInterval {
				t.Fatalf("got %+v\nwant %+v", h, tt.want)
			}
			if err := h.Validate(); err != nil {
				t.Fatalf("parsed config does not validate: %v", err)
			}
		})
	}
}

func TestCaddyfileBadURLRejectedOnLoad(t *testing.T) {
	// The URL is checked by Validate (so JSON configs get the same check);
	// the Caddyfile parser keeps placeholders such as {env.WAKEDOCK_URL}.
	for _, raw := range []string{"127.0.0.1:8000", "ftp://127.0.0.1", "http://", "http://x/?a=b", "::"} {
		var h Handler
		in := "wakedock " + raw + " {\n service whoami\n}"
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
			t.Fatalf("%s: parse: %v", raw, err)
		}
		if err := h.Validate(); err == nil {
			t.Fatalf("%s: Validate accepted a bad URL", raw)
		}
	}
}

func TestAdaptCaddyfileOrdersBeforeReverseProxy(t *testing.T) {
	// reverse_proxy written first: the directive order still puts wakedock first.
	input := `{
		auto_https off
	}
	http://app.localhost:8080 {
		reverse_proxy 127.0.0.1:18081
		wakedock http://127.0.0.1:8000 {
			service {labels.1}
			token {env.WAKEDOCK_BRIDGE_TOKEN}
		}
	}`
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Logf("warnings: %v", warnings)
	}
	s := string(out)
	iw, ir := strings.Index(s, `"handler":"wakedock"`), strings.Index(s, `"handler":"reverse_proxy"`)
	if iw < 0 || ir < 0 || iw > ir {
		t.Fatalf("wakedock not ordered before reverse_proxy:\n%s", s)
	}
	if !strings.Contains(s, `"service":"{http.request.host.labels.1}"`) {
		t.Fatalf("placeholder shorthand not expanded:\n%s", s)
	}
}

func TestValidateJSON(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr string
	}{
		{"good", `{"host":"http://127.0.0.1:8000","service":"whoami","token":"t","fail_mode":"open","timeout":"30s","activity_interval":"2s"}`, ""},
		{"good https trailing slash", `{"host":"https://wakedock.internal/","service":"whoami"}`, ""},
		{"good env placeholder", `{"host":"http://{env.WAKEDOCK_TEST_UNSET_HOST}127.0.0.1:8000","service":"x"}`, ""},
		{"good nanosecond numbers", `{"host":"http://127.0.0.1:8000","service":"x","timeout":1000000000}`, ""},
		{"missing host", `{"service":"whoami"}`, "host URL is required"},
		{"bad scheme", `{"host":"ws://127.0.0.1:8000","service":"whoami"}`, "scheme must be http or https"},
		{"no scheme", `{"host":"127.0.0.1:8000","service":"whoami"}`, "host URL"},
		{"unparsable", `{"host":"http://[::1","service":"whoami"}`, "host URL"},
		{"missing service", `{"host":"http://127.0.0.1:8000"}`, "service is required"},
		{"blank service", `{"host":"http://127.0.0.1:8000","service":"  "}`, "service is required"},
		{"bad fail_mode", `{"host":"http://127.0.0.1:8000","service":"x","fail_mode":"half"}`, "fail_mode must be"},
		{"negative timeout", `{"host":"http://127.0.0.1:8000","service":"x","timeout":"-5s"}`, "timeout must be > 0"},
		{"negative interval", `{"host":"http://127.0.0.1:8000","service":"x","activity_interval":-1}`, "activity_interval must be > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := json.Unmarshal([]byte(tt.json), &h); err != nil {
				t.Fatal(err)
			}
			err := h.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestModuleRegistered(t *testing.T) {
	mod, err := caddy.GetModule("http.handlers.wakedock")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mod.New().(*Handler); !ok {
		t.Fatalf("module constructs %T", mod.New())
	}
}
