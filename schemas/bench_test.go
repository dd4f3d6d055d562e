package schemas

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkValidate is the hub's per-event schema cost: Validate over the
// golden example of each agent kind (decode, whole-payload rules, data).
func BenchmarkValidate(b *testing.B) {
	s, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"heartbeat", "systemd", "profile", "smart", "network"} {
		payload, err := os.ReadFile(filepath.Join("examples", name+".v1.json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Validate(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
