package fleetview

import "testing"

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: an error
	}{
		{"1073741824", 1 << 30},
		{"10GiB", 10 << 30},
		{"10G", 10 << 30},
		{"1.5 GiB", 3 << 29},
		{"500MB", 500e6},
		{"150KiB", 150 << 10},
		{"2TB", 2e12},
		{"", 0},
		{"0", 0},
		{"-1GiB", 0},
		{"10XB", 0},
		{"GiB", 0},
		{"1e30", 0},
		{"99999999TiB", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.want == 0 {
				if err == nil {
					t.Errorf("ParseByteSize(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseByteSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
}
