package events

import "testing"

func TestSeverityRank(t *testing.T) {
	tests := []struct {
		name string
		sev  string
		want int
	}{
		{"critical", SeverityCritical, 0},
		{"warning", SeverityWarning, 1},
		{"info", SeverityInfo, 2},
		{"unknown", "fatal", 3},
		{"empty", "", 3},
		{"case matters", "Critical", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SeverityRank(tt.sev); got != tt.want {
				t.Errorf("SeverityRank(%q) = %d, want %d", tt.sev, got, tt.want)
			}
		})
	}
}
