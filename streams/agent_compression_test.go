package streams

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestAgentHubCompression: the agent's --hub-compression is what the link
// runs with, negotiated with the hub's --leaf-compression (off on either
// side is off); the default is off, and an unknown mode is refused.
func TestAgentHubCompression(t *testing.T) {
	tests := []struct {
		name, hub, agent, want string
	}{
		{name: "default agent against a default hub", hub: "", agent: "", want: server.CompressionOff},
		{name: "s2_fast asked, hub s2_auto", hub: server.CompressionS2Auto, agent: server.CompressionS2Fast, want: server.CompressionS2Fast},
		{name: "s2_fast asked, hub off", hub: server.CompressionOff, agent: server.CompressionS2Fast, want: server.CompressionOff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			hub, err := StartHub(ctx, HubOptions{IngestCheck: testIngestCheck, DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", LeafAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
				LeafCompression: tt.hub, Log: testLog(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer hub.Close()
			a, err := StartAgent(ctx, AgentOptions{Host: "goliath", HubURLs: []string{hub.LeafURL()}, DataDir: t.TempDir(),
				ReconnectInterval: 100 * time.Millisecond, HubCompression: tt.agent, Log: testLog(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			deadline := time.Now().Add(20 * time.Second)
			var got string
			for time.Now().Before(deadline) {
				lz, err := a.Server().Leafz(nil)
				if err == nil && len(lz.Leafs) == 1 && lz.Leafs[0].Compression != "" {
					got = lz.Leafs[0].Compression
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != tt.want {
				t.Errorf("leaf link compression = %q, want %q", got, tt.want)
			}
		})
	}
	_, err := StartAgent(context.Background(), AgentOptions{Host: "goliath", DataDir: t.TempDir(), HubCompression: "gzip", Log: testLog(t)})
	if err == nil || !strings.Contains(err.Error(), "--hub-compression") {
		t.Errorf("StartAgent with HubCompression gzip: err = %v, want one naming --hub-compression", err)
	}
}
