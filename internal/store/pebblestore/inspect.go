package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"

	"github.com/ternmq/tern/internal/store"
)

// Before Pebble opens a directory for writing it may create a new, empty database over files it
// does not recognise as one (a missing manifest marker), delete files it takes for obsolete,
// flush replayed logs into new tables and rewrite its markers. So a directory that has content is
// first read without writing: tern's own look at the write-ahead logs (walscan.go), then Pebble
// opened read-only, which checks the manifest and replays the logs in memory, then tern's format
// version. Only a directory that passes is opened for writing, and never with permission to create
// a database; a directory that fails is left exactly as it was.

// Damage is one problem found in a data directory.
type Damage struct {
	File   string // the damaged file, or the directory
	Offset int64  // where in File the damage starts; -1 when it is not about a place in a file
	What   string
	// Acceptable: Open with AcceptCorruption can go on past it, losing what is described.
	Acceptable bool
}

func (d Damage) String() string {
	if d.Offset >= 0 {
		return fmt.Sprintf("%s at offset %d: %s", d.File, d.Offset, d.What)
	}
	return fmt.Sprintf("%s: %s", d.File, d.What)
}

// Report is what inspecting a data directory found.
type Report struct {
	Dir string
	// Empty: the directory is absent or holds nothing; Open creates a store there.
	Empty  bool
	Damage []Damage
	// Notes are findings that are not damage: a torn tail, writes a start would drop.
	Notes []string
	// Keys is the number of keys read (Check only).
	Keys int
}

// ignoredEntries may be in a directory that is otherwise empty: Pebble's lock file from a creation
// that stopped before anything else, a filesystem's lost+found at a mount point.
var ignoredEntries = map[string]bool{"LOCK": true, "lost+found": true}

// isEmptyDir reports whether dir is absent or has nothing but ignoredEntries.
func isEmptyDir(fs vfs.FS, dir string) (bool, error) {
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return true, nil // absent (creating it will say why not, if it cannot be)
	}
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if !ignoredEntries[n] {
			return false, nil
		}
	}
	return true, nil
}

// inspection is the read-only part of Open.
type inspection struct {
	Report
	scans []*walScan
}

// inspect reads dir without writing: write-ahead logs, the clean-stop marker, then Pebble
// read-only and the format version.
func (s *Store) inspect(fs vfs.FS) (*inspection, error) {
	in := &inspection{Report: Report{Dir: s.dir}}
	empty, err := isEmptyDir(fs, s.dir)
	if err != nil {
		return nil, err
	}
	if in.Empty = empty; empty {
		return in, nil
	}
	if in.scans, err = scanWALs(fs, s.dir); err != nil {
		return nil, err
	}
	in.checkLogs(fs, s.dir)
	if len(in.Damage) > 0 {
		return in, nil // Pebble would refuse these too, or replay past them: no need to ask it
	}
	if err := s.checkReadOnly(fs); err != nil {
		if errors.Is(err, store.ErrFormat) || locked(err) {
			// Not damage: another version's or program's database, which says so, or a directory
			// another process has open.
			return nil, err
		}
		in.Damage = append(in.Damage, damageOf(s.dir, err))
	}
	return in, nil
}

// checkLogs turns what reading the logs found into damage and notes.
func (in *inspection) checkLogs(fs vfs.FS, dir string) {
	closed, wasClosed, err := readClosed(fs, dir)
	if err != nil {
		in.Damage = append(in.Damage, Damage{File: fs.PathJoin(dir, closedMarker), Offset: -1, What: err.Error()})
	}
	for i, w := range in.scans {
		newest := i == len(in.scans)-1
		lost := w.size - w.end
		switch {
		case w.clean:
		case !newest:
			in.Damage = append(in.Damage, Damage{File: w.path, Offset: w.end, Acceptable: true,
				What: fmt.Sprintf("an older write-ahead log does not read to its end (%v); the %d bytes after it would be lost, and with them acknowledged writes", w.err, lost)})
		case w.damaged:
			what := fmt.Sprintf("garbage in the write-ahead log (%v)", w.err)
			if w.syncedPast > 0 {
				what = fmt.Sprintf("garbage in the write-ahead log: a later record says the log was synced up to offset %d, so this is damage, not a write cut short by a crash", w.syncedPast)
			}
			in.Damage = append(in.Damage, Damage{File: w.path, Offset: w.end, Acceptable: true,
				What: fmt.Sprintf("%s; the %d bytes after it would be lost", what, lost)})
		case wasClosed:
			// Reported below with the size check.
		default:
			in.Notes = append(in.Notes, fmt.Sprintf("%s: torn tail at offset %d: the last %d bytes are a write cut short by a crash and are skipped (%v)", w.path, w.end, lost, w.err))
		}
	}
	if !wasClosed {
		return
	}
	path := fs.PathJoin(dir, closed.log)
	var newest *walScan
	if n := len(in.scans); n > 0 {
		newest = in.scans[n-1]
	}
	want, _ := logNumber(closed.log)
	switch {
	case newest == nil || newest.num < want:
		in.Damage = append(in.Damage, Damage{File: path, Offset: -1, Acceptable: true,
			What: "tern stopped cleanly with this as its newest write-ahead log, and it is missing now"})
	case newest.num > want:
		// Pebble was opened since by something else (an older tern, a tool): the marker is stale.
	case newest.size != closed.size:
		in.Damage = append(in.Damage, Damage{File: path, Offset: min(newest.size, closed.size), Acceptable: true,
			What: fmt.Sprintf("the write-ahead log was %d bytes when tern stopped cleanly and is %d bytes now: it was cut or changed while tern was stopped", closed.size, newest.size)})
	case !newest.clean && !newest.damaged:
		in.Damage = append(in.Damage, Damage{File: path, Offset: newest.end, Acceptable: true,
			What: fmt.Sprintf("tern stopped cleanly, yet the write-ahead log does not read to its end (%v); the %d bytes after it would be lost", newest.err, newest.size-newest.end)})
	}
}

// logNumber parses a write-ahead log's file name (000123.log).
func logNumber(name string) (wal.NumWAL, bool) {
	n, err := strconv.ParseUint(strings.TrimSuffix(name, ".log"), 10, 64)
	return wal.NumWAL(n), err == nil && strings.HasSuffix(name, ".log")
}

// checkReadOnly opens Pebble read-only (which changes no file), and checks the format version.
func (s *Store) checkReadOnly(fs vfs.FS) error {
	db, err := s.openPebble(fs, true)
	if err != nil {
		return err
	}
	err = checkFormat(db, s.dir)
	if errors.Is(err, errNoFormat) || errors.Is(err, errOldFormat) {
		err = nil // an empty or older database: Open stamps it
	}
	return errors.Join(err, db.Close())
}

// damageOf describes why Pebble or the format check refused the directory.
func damageOf(dir string, err error) Damage {
	d := Damage{File: dir, Offset: -1, What: err.Error()}
	switch {
	case errors.Is(err, pebble.ErrDBDoesNotExist):
		d.What = "the directory holds files but no readable Pebble database: its manifest marker (marker.manifest.*) or the MANIFEST it names is missing; tern does not create a new store over existing files"
	case pebble.IsCorruptionError(err):
		d.What = "damaged: " + oneLine(err)
	case errors.Is(err, store.ErrFormat):
		d.What = oneLine(err)
	}
	return d
}

// oneLine keeps the first line of an error from Pebble (its errors carry stack traces in %+v
// only, but some messages span lines).
func oneLine(err error) string {
	m := err.Error()
	if i := strings.IndexByte(m, '\n'); i >= 0 {
		m = m[:i]
	}
	return m
}

// refusal is Open's error for a damaged directory.
func (s *Store) refusal(in *inspection, accept bool) error {
	var b strings.Builder
	for i, d := range in.Damage {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(d.String())
	}
	hint := "nothing was changed; `tern store check` reports the damage"
	if accept && !allAcceptable(in.Damage) {
		hint += "; accepting corruption cannot go past this: restore the directory from a backup"
	} else if !accept {
		hint += "; to start anyway and lose what is described, set store.accept_corruption (--store-accept-corruption)"
	}
	return fmt.Errorf("pebblestore: data dir %q is damaged: %s (%s): %w", s.dir, b.String(), hint, store.ErrDamaged)
}

func allAcceptable(ds []Damage) bool {
	for _, d := range ds {
		if !d.Acceptable {
			return false
		}
	}
	return true
}

// acceptDamage cuts each damaged log after its last readable record, keeping the original beside
// it under a name Pebble ignores.
func (s *Store) acceptDamage(in *inspection) error {
	for _, w := range in.scans {
		if w.clean && !w.damaged {
			continue
		}
		saved, err := setAside(w.fs, w.path, time.Now())
		if err != nil {
			return fmt.Errorf("pebblestore: keep a copy of %s: %w", w.path, err)
		}
		if err := truncateFile(w.fs, w.path, w.end); err != nil {
			return fmt.Errorf("pebblestore: cut %s: %w", w.path, err)
		}
		s.log.Error("pebblestore: accepted a damaged write-ahead log: what followed the damage is lost",
			"dir", s.dir, "log", w.path, "offset", w.end, "bytes_lost", w.size-w.end, "original_kept_as", saved)
		w.size, w.clean, w.damaged = w.end, true, false
		if w.lastMark > w.end {
			w.lastMark = -1
		}
	}
	return nil
}

// readError marks an error from reading the database that comes from a damaged file, naming the
// file when Pebble reported it (events.go).
func (s *Store) readError(err error) error {
	if err == nil || !pebble.IsCorruptionError(err) {
		return err
	}
	if i := s.bg.corrupt.Load(); i != nil {
		return fmt.Errorf("%w: %s: %s (`tern store check` reports the damage)", store.ErrDamaged, i.Path, oneLine(err))
	}
	return fmt.Errorf("%w: %s (`tern store check` reports the damage)", store.ErrDamaged, oneLine(err))
}

// locked reports whether err is Pebble failing to take the directory's LOCK file because another
// process holds it (fcntl gives EAGAIN, or EACCES on some systems).
func locked(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EACCES)
}
