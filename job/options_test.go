package job

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeOptions(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Ports []int `json:"ports"`
	}
	var c cfg
	if err := DecodeOptions("tcp", json.RawMessage(`{"ports":[22]}`), &c); err != nil || len(c.Ports) != 1 || c.Ports[0] != 22 {
		t.Fatalf("ports: %v, %v", c, err)
	}
	if err := DecodeOptions("tcp", nil, &c); err != nil || len(c.Ports) != 1 {
		t.Fatalf("empty options changed the config or failed: %v, %v", c, err)
	}
	err := DecodeOptions("tcp", json.RawMessage(`{"prots":[22]}`), &c)
	if err == nil || !strings.Contains(err.Error(), "tcp options") || !strings.Contains(err.Error(), "prots") {
		t.Fatalf("unknown field: %v", err)
	}
}
