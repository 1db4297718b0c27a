package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Sync marks. A write is applied (to Pebble's memtable and its write-ahead log buffer) before
// the fsync that would make it durable; when that fsync fails, the writer is told so (a PUBACK
// 0x80, say), yet the write's bytes may already be in the log file and would be replayed at the
// next start: a publisher that retried after the refusal then finds its message twice. So every
// fsync the syncer makes is of a small marker record (Pebble's LogData, which replay ignores),
// and at open, in SyncAlways mode, whatever the logs hold after the last marker is cut off before
// Pebble replays it. Nothing there was acknowledged as stored: a ticket completes only once a
// marker after its writes is synced. The state kept is a prefix of what was written, as a power
// cut at that marker would have left it.
//
// A run in SyncInterval mode acknowledges before the fsync and promises that a process crash
// loses nothing, so it marks its start with markInterval and its logs are never cut.

const (
	markAlways   = 'A'
	markInterval = 'I'
)

// markData is the LogData payload of each kind of mark.
func markData(kind byte) []byte { return []byte("\x00tern-sync-mark-" + string(kind)) }

var (
	markAlwaysData   = markData(markAlways)
	markIntervalData = markData(markInterval)
)

// markOf tells whether a log record (an encoded Pebble batch) is a mark, and which.
func markOf(rec []byte) byte {
	const headerLen = 12 // sequence number (8) and count (4)
	if len(rec) <= headerLen || binary.LittleEndian.Uint32(rec[8:12]) != 0 {
		return 0
	}
	body := rec[headerLen:]
	if body[0] != byte(pebble.InternalKeyKindLogData) {
		return 0
	}
	n, w := binary.Uvarint(body[1:])
	if w <= 0 || uint64(len(body)-1-w) != n {
		return 0
	}
	switch d := body[1+w:]; {
	case bytes.Equal(d, markAlwaysData):
		return markAlways
	case bytes.Equal(d, markIntervalData):
		return markInterval
	}
	return 0
}

// unsyncedCut is what cutUnsynced removes: the log holding the last mark is cut just after it and
// every later log is emptied.
type unsyncedCut struct {
	at      *walScan
	later   []*walScan
	records int
}

// planCut finds the writes after the last mark, if the run that made them was in SyncAlways mode.
func planCut(scans []*walScan) (unsyncedCut, bool) {
	var c unsyncedCut
	for i := len(scans) - 1; i >= 0; i-- {
		w := scans[i]
		if w.lastMark < 0 {
			c.later = append(c.later, w)
			c.records += w.records
			continue
		}
		if w.markKind != markAlways {
			return c, false
		}
		c.at = w
		c.records += w.afterMark
		return c, c.records > 0
	}
	return c, false // no mark: a store written before marks existed
}

// cutUnsynced applies the cut; each file is replaced atomically.
func (s *Store) cutUnsynced(c unsyncedCut) error {
	if err := truncateFile(c.at.fs, c.at.path, c.at.lastMark); err != nil {
		return err
	}
	for _, w := range c.later {
		if err := truncateFile(w.fs, w.path, 0); err != nil {
			return err
		}
	}
	s.log.Warn("pebblestore: dropped writes made after the last sync before the previous stop; none of them was acknowledged as stored",
		"dir", s.dir, "records", c.records, "log", c.at.path, "from_offset", c.at.lastMark, "emptied_logs", len(c.later))
	return nil
}

// truncateFile replaces path by its first n bytes: written to a temporary file, synced, renamed
// over the original and the directory synced, so a crash leaves one or the other.
func truncateFile(fs vfs.FS, path string, n int64) error {
	src, err := fs.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := fs.PathJoin(fs.PathDir(path), "tern-cut.tmp")
	dst, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, io.LimitReader(src, n)); err != nil {
		_ = dst.Close()
		return fmt.Errorf("cut %s: %w", path, err)
	}
	if err := dst.Sync(); err != nil {
		_ = dst.Close()
		return fmt.Errorf("cut %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(fs, fs.PathDir(path))
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// setAside keeps a damaged log's original before it is cut, under a name Pebble ignores.
func setAside(fs vfs.FS, path string, now time.Time) (string, error) {
	dst := fs.PathJoin(fs.PathDir(path), fmt.Sprintf("damaged-%d-%s.wal", now.Unix(), strings.TrimSuffix(fs.PathBase(path), ".log")))
	src, err := fs.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	f, err := fs.Create(dst, vfs.WriteCategoryUnspecified)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, src); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return "", err
	}
	return dst, f.Close()
}

// The clean-stop marker: Close writes which log was the newest and its size once Pebble has
// closed it, and Open removes the file before anything is written. A newest log that is shorter
// or longer than that, or does not read to its end, was damaged while tern was stopped: a crash
// cannot explain it.
const closedMarker = "tern-closed"

type closedState struct {
	log  string
	size int64
}

func readClosed(fs vfs.FS, dir string) (closedState, bool, error) {
	f, err := fs.Open(fs.PathJoin(dir, closedMarker))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return closedState{}, false, nil
		}
		return closedState{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return closedState{}, false, err
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return closedState{}, false, nil // unreadable: as if absent (a crash while writing it)
	}
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return closedState{}, false, nil
	}
	return closedState{log: fields[0], size: n}, true, nil
}

func writeClosed(fs vfs.FS, dir string, st closedState) error {
	tmp := fs.PathJoin(dir, closedMarker+".tmp")
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s %d\n", st.log, st.size); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, fs.PathJoin(dir, closedMarker)); err != nil {
		return err
	}
	return syncDir(fs, dir)
}
