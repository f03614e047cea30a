package wakedock

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The golden files are written by the host's Rust test
// (host/src/wake/golden.rs) from the contract types; decoding them here
// with unknown fields refused, and encoding them back to the same JSON,
// proves the bridge's structs know every field under the same name.

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "contract", name))
	if err != nil {
		t.Fatalf("%s: %v (written by `cargo test -p wakedock --lib golden`)", name, err)
	}
	return b
}

// decodeStrict decodes golden file name into v, refusing unknown fields,
// and checks that v encodes back to the same document.
func decodeStrict(t *testing.T, name string, v any) {
	t.Helper()
	data := readGolden(t, name)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	back, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	_ = json.Unmarshal(data, &want)
	_ = json.Unmarshal(back, &got)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%s: a field is missing or renamed in the Go struct\nwant %s\ngot  %s", name, data, back)
	}
}

func TestContractGoldenFiles(t *testing.T) {
	var snap snapshot
	decodeStrict(t, "snapshot.json", &snap)
	if len(snap.Services) != 2 || snap.Services[0].State != "asleep" || snap.Services[1].State != "failed" {
		t.Fatalf("snapshot: %+v", snap)
	}
	for _, ss := range snap.Services {
		if parseState(ss.State) == stateUnknown {
			t.Errorf("state %q is not one the bridge knows", ss.State)
		}
	}
	m := newServiceMeta(&snap.Services[0])
	if !m.dynamic || m.wakeTimeout.Milliseconds() != 30000 || m.displayName != "My Blog" {
		t.Errorf("meta from the golden state: %+v", m)
	}
	for _, name := range []string{"state-waking.json", "state-stopped-outside.json", "state-awake.json"} {
		var ss serviceState
		decodeStrict(t, name, &ss)
		if parseState(ss.State) == stateUnknown {
			t.Errorf("%s: state %q is not one the bridge knows", name, ss.State)
		}
	}
	var w woken
	decodeStrict(t, "woken.json", &w)
	if w.State != "awake" || w.WaitedMS != 412 {
		t.Errorf("woken: %+v", w)
	}
	var a activityReport
	decodeStrict(t, "activity.json", &a)
	if a.Services["blog"].Requests != 12 || a.Services["blog"].OpenConnections != 1 {
		t.Errorf("activity: %+v", a)
	}
	var p problem
	decodeStrict(t, "problem-wake-timeout.json", &p)
	if p.Code != "wake_timeout" || p.Status != 504 {
		t.Errorf("problem: %+v", p)
	}
}
