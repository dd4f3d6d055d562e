package fleetview

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize writes n bytes for people (binary units).
func ByteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", f, []string{"", "KiB", "MiB", "GiB", "TiB"}[i])
}

// ParseByteSize reads a size: bytes, or a number with a unit, binary
// (KiB, MiB, GiB, TiB; K, M, G, T mean the same) or decimal (kB, MB, GB, TB).
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult := map[string]float64{"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || !(f > 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size: want bytes or a number with a unit, e.g. 10GiB, 500MB, 1073741824", s)
	}
	return int64(f * mult), nil
}
