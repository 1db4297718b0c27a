package broker

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store/pebblestore"
)

// BenchmarkSubscribeDurable is one more SUBSCRIBE (one new filter, durable before it returns) on
// a persistent session that already holds 1,000 or 10,000 subscriptions, on a disk store. Beside
// the time it reports the bytes the store wrote per subscribe: to its write-ahead log (what the
// subscribe itself costs) and to all its files (the log plus flushes and compactions it causes).
// Each new filter is unsubscribed again outside the measurement, so the session keeps its size.
//
//	go test -run '^$' -bench SubscribeDurable -count 5 ./internal/broker
func BenchmarkSubscribeDurable(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchSubscribeDurable(b, n) })
	}
}

func benchSubscribeDurable(b *testing.B, n int) {
	fs := &countingFS{FS: vfs.Default}
	st, err := pebblestore.Open(b.TempDir(), pebblestore.Options{FS: fs})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.SweepInterval = 0
	cfg.MaxSubscriptions = 0
	br, err := New(cfg, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = br.Close()
		_ = st.Close()
	}()
	c, _, err := br.Connect(context.Background(), ConnectRequest{ClientID: "many", Expiry: 3600, Sink: &nullSink{}})
	if err != nil {
		b.Fatal(err)
	}
	c.Start()
	// Filters of a realistic length (a device fleet's topics), added a thousand at a time.
	reqs := make([]SubscribeRequest, 0, 1000)
	for i := 0; i < n; i++ {
		reqs = append(reqs, SubscribeRequest{Filter: fmt.Sprintf("site/%04d/device/%06d/telemetry/+", i%100, i), QoS: 1})
		if len(reqs) == cap(reqs) || i == n-1 {
			for _, r := range c.Subscribe(reqs) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			reqs = reqs[:0]
		}
	}
	var wal, all int64
	i := 0
	for b.Loop() {
		w0, a0 := fs.wal.Load(), fs.all.Load()
		f := fmt.Sprintf("extra/%09d/telemetry/+", i)
		if r := c.Subscribe([]SubscribeRequest{{Filter: f, QoS: 1}}); r[0].Err != nil {
			b.Fatal(r[0].Err)
		}
		wal += fs.wal.Load() - w0
		all += fs.all.Load() - a0
		b.StopTimer()
		c.Unsubscribe([]string{f})
		b.StartTimer()
		i++
	}
	b.ReportMetric(float64(wal)/float64(b.N), "wal-B/op")
	b.ReportMetric(float64(all)/float64(b.N), "written-B/op")
}

// countingFS counts the bytes written to files: to write-ahead logs (*.log) and to any file.
type countingFS struct {
	vfs.FS
	wal, all atomic.Int64
}

func (fs *countingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &countingFile{File: f, fs: fs, wal: strings.HasSuffix(name, ".log")}, nil
}

func (fs *countingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *countingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type countingFile struct {
	vfs.File
	fs  *countingFS
	wal bool
}

func (f *countingFile) count(n int) {
	f.fs.all.Add(int64(n))
	if f.wal {
		f.fs.wal.Add(int64(n))
	}
}

func (f *countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.count(n)
	return n, err
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.count(n)
	return n, err
}
