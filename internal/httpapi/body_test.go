package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
)

// stalled yields its bytes and then fails as a read past the server's read timeout does.
type stalled struct{ r io.Reader }

func (s *stalled) Read(p []byte) (int, error) {
	if n, _ := s.r.Read(p); n > 0 {
		return n, nil
	}
	return 0, os.ErrDeadlineExceeded
}

func (s *stalled) Close() error { return nil }

// TestReadBodyDoesNotTrustContentLength: a request announcing 64 MiB that sends three bytes and
// stalls costs the server a few kilobytes, not 64 MiB.
func TestReadBodyDoesNotTrustContentLength(t *testing.T) {
	const announced = 64 << 20
	r := httptest.NewRequest(http.MethodPost, "/v1/pub/t", nil)
	r.Body = &stalled{r: strings.NewReader("abc")}
	r.ContentLength = announced
	w := httptest.NewRecorder()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	body, err := readBody(w, r, 2*announced)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, os.ErrDeadlineExceeded) || body != nil {
		t.Fatalf("readBody = %q, %v; want the read timeout", body, err)
	}
	if status, code := bodyStatus(err); status != http.StatusRequestTimeout || code != "body_timeout" {
		t.Fatalf("a timed-out body answers %d %s, want 408 body_timeout", status, code)
	}
	// TotalAlloc only grows; the test binary's other goroutines allocate little meanwhile.
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("reading 3 bytes of an announced %d allocated %d bytes", announced, got)
	}
}

// TestReadGrowing: the buffer grows with the bytes that arrive, whatever length was announced;
// an honest body is read into one buffer of its size; the limit holds.
func TestReadGrowing(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160,000 bytes
	cases := []struct {
		name      string
		body      []byte
		announced int64
		limit     int64
		maxCap    int
	}{
		{"honest small", payload[:100], 100, 1 << 20, 100},
		{"honest large", payload, int64(len(payload)), 1 << 20, len(payload)},
		{"no length", payload, -1, 1 << 20, 2 * len(payload)},
		{"claims far more", payload[:10], 1 << 30, 1 << 31, firstBodyRead},
		{"claims more, sends a lot", payload, 1 << 30, 1 << 31, 2 * len(payload)},
		{"claims less", payload, 10, 1 << 20, 2 * len(payload)},
		{"empty", nil, 0, 1 << 20, 0},
		{"limit below the first read", payload[:100], -1, 100, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// iotest-style: at most 1,000 bytes per read, as a network delivers them.
			got, err := readGrowing(&chunked{b: c.body, n: 1000}, c.announced, c.limit)
			if err != nil || !bytes.Equal(got, c.body) {
				t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(c.body))
			}
			if cap(got) > c.maxCap {
				t.Fatalf("buffer capacity %d for %d bytes (announced %d), want at most %d", cap(got), len(got), c.announced, c.maxCap)
			}
		})
	}
	// An honest body is one allocation, as before bodies grew step by step. (net/http's body
	// returns io.EOF with the last bytes of a body with a length.)
	small := payload[:3000]
	rd := &chunked{n: 1000, eofWithData: true}
	if n := testing.AllocsPerRun(100, func() {
		rd.b = small
		if b, err := readGrowing(rd, int64(len(small)), 1<<20); err != nil || len(b) != len(small) {
			t.Fatalf("%d bytes, %v", len(b), err)
		}
	}); n != 1 {
		t.Fatalf("reading an honest %d-byte body made %v allocations, want 1", len(small), n)
	}
	// Past the limit: http.MaxBytesReader's error, from a buffer no larger than the limit.
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", &chunked{b: payload, n: 1000})
	r.ContentLength = -1
	if _, err := readBody(w, r, 5000); !errors.As(err, new(*http.MaxBytesError)) {
		t.Fatalf("past the limit: %v", err)
	}
}

// chunked hands out at most n bytes per read, and io.EOF with the last ones if eofWithData.
type chunked struct {
	b           []byte
	n           int
	eofWithData bool
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	if len(c.b) == 0 && c.eofWithData {
		return k, io.EOF
	}
	return k, nil
}

func (c *chunked) Close() error { return nil }

func FuzzReadGrowing(f *testing.F) {
	f.Add([]byte("hello"), int64(5), int64(100), 3)
	f.Add([]byte("hello"), int64(1<<40), int64(1<<41), 1)
	f.Add([]byte{}, int64(-1), int64(1), 7)
	f.Fuzz(func(t *testing.T, body []byte, announced, limit int64, step int) {
		if limit < 1 || step < 1 || int64(len(body)) > limit {
			return // the limit is the caller's reader's to enforce
		}
		got, err := readGrowing(&chunked{b: body, n: step}, announced, limit)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read %q, %v; want %q", got, err, body)
		}
		if cap(got) > max(2*len(body), min(firstBodyRead, int(limit))) && int64(cap(got)) > announced {
			t.Fatalf("capacity %d for %d bytes", cap(got), len(body))
		}
	})
}
