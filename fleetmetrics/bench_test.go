package fleetmetrics

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/pinkiefleet/pinkie/events"
	"github.com/pinkiefleet/pinkie/projections"
)

// BenchmarkScrape500Hosts: one scrape of a fleet of 500 hosts, each with a
// heartbeat, 5 filesystems and 2 drives of 20 SMART attributes (about
// 80,000 series), records read from memory as the hub's buckets hold them.
func BenchmarkScrape500Hosts(b *testing.B) {
	now := time.Now()
	st := &memStore{buckets: map[string]map[string][]byte{bucketInventory: {}, bucketDrives: {}, bucketAlerts: {}, bucketLastDeploy: {}, bucketGuests: {}}}
	t := &testing.T{}
	for i := 0; i < 500; i++ {
		host := fmt.Sprintf("host%03d", i)
		hb := now
		st.buckets[bucketInventory][host] = record(t, projections.Host{Host: host, Online: true, LastSeen: now, LastHeartbeat: &hb,
			Heartbeat: &events.Heartbeat{Load1: 1, MemTotalBytes: 1 << 34, MemAvailableBytes: 1 << 33}})
		for m := 0; m < 5; m++ {
			mp := "/mnt/" + strconv.Itoa(m)
			k, v := driveRecord(t, host, "fs", mp, "ok", now, events.Filesystem{MountPoint: mp, Device: "/dev/sd" + strconv.Itoa(m), FSType: "ext4", SizeBytes: 1 << 40})
			st.buckets[bucketDrives][k] = v
		}
		for d := 0; d < 2; d++ {
			var attrs []events.ATAAttribute
			for a := 1; a <= 20; a++ {
				attrs = append(attrs, events.ATAAttribute{ID: a, Name: "Attr_" + strconv.Itoa(a), Value: 100, Raw: uint64(a)})
			}
			dev := "/dev/sd" + strconv.Itoa(d)
			k, v := driveRecord(t, host, "smart", dev, "ok", now, events.SMART{Device: dev, ATAAttributes: attrs})
			st.buckets[bucketDrives][k] = v
		}
	}
	h := Handler(st, func() time.Time { return now }, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics/fleet", nil).WithContext(context.Background()))
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
		b.SetBytes(int64(rec.Body.Len()))
		_, _ = io.Copy(io.Discard, rec.Body)
	}
}
