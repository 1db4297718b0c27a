package broker

import (
	"sync"
	"sync/atomic"
)

// faceID names a session's face (ConnectRequest.Face: "mqtt", "http", "mbus"...) in one byte.
// Every session keeps its face, for the console's lists after the connection ends, and a
// handful of names cost a 16-byte string header each in every session otherwise.
type faceID uint8

// faceNames interns the faces' names, process-wide: they are the faces' own constants, not
// anything a client sends, so the table stays as small as the number of faces. Reads load the
// current slice; a new name copies it under the lock.
var faceNames struct {
	mu    sync.Mutex
	names atomic.Pointer[[]string]
}

// maxFaces bounds the table; a name past it is kept as the empty name (faceID 0).
const maxFaces = 255

// internFace returns the id of name, adding it to the table when it is new.
func internFace(name string) faceID {
	if name == "" {
		return 0
	}
	if id, ok := lookupFace(name); ok {
		return id
	}
	faceNames.mu.Lock()
	defer faceNames.mu.Unlock()
	if id, ok := lookupFace(name); ok {
		return id
	}
	var names []string
	if p := faceNames.names.Load(); p != nil {
		names = *p
	}
	if len(names) >= maxFaces {
		return 0
	}
	grown := append(append(make([]string, 0, len(names)+1), names...), name)
	faceNames.names.Store(&grown)
	return faceID(len(grown)) // ids start at 1: 0 is the empty name
}

func lookupFace(name string) (faceID, bool) {
	if p := faceNames.names.Load(); p != nil {
		for i, n := range *p {
			if n == name {
				return faceID(i + 1), true
			}
		}
	}
	return 0, false
}

// String returns the face's name.
func (id faceID) String() string {
	if p := faceNames.names.Load(); id > 0 && p != nil && int(id) <= len(*p) {
		return (*p)[id-1]
	}
	return ""
}
