package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/ternmq/tern/internal/httpauth"
)

// firstBodyRead is the most a body read allocates before any byte has arrived.
const firstBodyRead = 4 << 10

// readBody reads a request body of at most limit bytes (more is a *http.MaxBytesError). How long
// the client may take is the HTTP server's read timeout: a read past it fails with
// os.ErrDeadlineExceeded.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	return readGrowing(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
}

// readGrowing reads rd to its end into a buffer that grows with what arrives: it starts at
// firstBodyRead (or the announced length when smaller) and at most doubles when full, never past
// limit (rd enforces the limit itself). A client that announces a large Content-Length and sends
// a few bytes therefore costs a few kilobytes, not what it announced. The announced length still
// caps each step, so an honest body ends in a buffer of exactly its size.
func readGrowing(rd io.Reader, announced, limit int64) ([]byte, error) {
	size := min(int64(firstBodyRead), limit)
	if announced >= 0 && announced < size {
		size = announced
	}
	buf := make([]byte, 0, size)
	var one []byte // made only when needed: it escapes to the heap
	for {
		if len(buf) == cap(buf) {
			// Full: see whether more comes before growing (a body without a length, or with a
			// wrong one, ends here; net/http's body with a length returns io.EOF with its last
			// bytes and never gets here).
			if one == nil {
				one = make([]byte, 1)
			}
			n, err := io.ReadFull(rd, one)
			if n == 0 {
				if err == io.EOF {
					return buf, nil
				}
				return nil, err
			}
			next := min(int64(max(2*cap(buf), firstBodyRead)), limit)
			if int64(len(buf)) < announced && announced < next {
				next = announced
			}
			next = max(next, int64(len(buf))+1)
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = append(grown, one[0])
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// bodyStatus maps a body read error to an HTTP status and a stable code: 413 past the limit, 408
// when the client did not send it in time, 400 otherwise.
func bodyStatus(err error) (int, string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "body_too_large"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "body_timeout"
	default:
		return http.StatusBadRequest, "bad_request"
	}
}

// bodyFailed answers a failed body read with bodyStatus's status and a JSON error.
func bodyFailed(w http.ResponseWriter, err error, limit int64) {
	status, code := bodyStatus(err)
	msg := "reading the body: " + err.Error()
	switch status {
	case http.StatusRequestEntityTooLarge:
		msg = fmt.Sprintf("body larger than %d bytes", limit)
	case http.StatusRequestTimeout:
		msg = "the request body did not arrive in time"
	}
	httpauth.WriteError(w, status, code, msg)
}
