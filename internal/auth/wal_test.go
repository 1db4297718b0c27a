package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The WAL fixtures come from testdata/gen-users-db.sh (the real sqlite3 tool): wal.db with its
// content still in wal.db-wal, including an uncommitted tail, and walreset.db whose WAL was reset
// and still holds the frames of before the reset.

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// usersOf parses an image as ImportULWMQ does and returns name -> hash.
func usersOf(t testing.TB, image []byte) map[string]string {
	t.Helper()
	rows, bad, err := parseULWMQ(image)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d bad rows", bad)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.name] = r.hash
	}
	return out
}

// walFrameInfo lists, for the frames that are valid (salts and checksum chain), whether each is a
// commit frame: an oracle written apart from walFrames' bookkeeping.
func walFrameInfo(t testing.TB, wal []byte) (commits []int, valid int) {
	t.Helper()
	ps := int(binary.BigEndian.Uint32(wal[8:]))
	order := binary.ByteOrder(binary.LittleEndian)
	if binary.BigEndian.Uint32(wal) == walMagicBE {
		order = binary.BigEndian
	}
	s0, s1 := binary.BigEndian.Uint32(wal[24:]), binary.BigEndian.Uint32(wal[28:])
	for i := 0; ; i++ {
		off := walHeaderSize + i*(24+ps)
		if off+24+ps > len(wal) || !bytes.Equal(wal[off+8:off+16], wal[16:24]) {
			return commits, i
		}
		s0, s1 = walChecksum(order, s0, s1, wal[off:off+8])
		s0, s1 = walChecksum(order, s0, s1, wal[off+24:off+24+ps])
		if s0 != binary.BigEndian.Uint32(wal[off+16:]) || s1 != binary.BigEndian.Uint32(wal[off+20:]) {
			return commits, i
		}
		if binary.BigEndian.Uint32(wal[off+4:]) != 0 {
			commits = append(commits, i)
		}
	}
}

// TestImportWALModeDatabase is the reported failure: a users.db whose rows are all in users.db-wal
// read as "no table users". Read from disk with its WAL it imports everything committed, the
// later delete and update included, and nothing of the uncommitted tail; sent without its WAL it
// is refused with a message that says what to do.
func TestImportWALModeDatabase(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	if _, _, err := e.a.ImportULWMQ(bytes.NewReader(readTestdata(t, "wal.db"))); !errors.Is(err, ErrWALMode) ||
		!strings.Contains(err.Error(), "VACUUM INTO") || !strings.Contains(err.Error(), "import-ulwmq") {
		t.Fatalf("a WAL-mode file without its WAL: %v", err)
	}
	image, frames, err := ReadULWMQFile(filepath.Join("testdata", "wal.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Five transactions (the table, three of inserts, the delete and update), then the frames of
	// the one that was not committed.
	wal := readTestdata(t, "wal.db-wal")
	commits, valid := walFrameInfo(t, wal)
	if len(commits) != 5 || frames != commits[4]+1 || valid != frames || walHeaderSize+frames*(24+512) >= len(wal) {
		t.Fatalf("frames used %d; commits at %v, %d valid of %d bytes: the fixture should end in uncommitted frames",
			frames, commits, valid, len(wal))
	}
	if walMode(image) {
		t.Error("the image is still marked WAL mode")
	}
	n, skipped, err := e.a.ImportULWMQ(bytes.NewReader(image), "wal")
	if err != nil || n != 119 || skipped != 0 {
		t.Fatalf("imported %d, skipped %d, %v", n, skipped, err)
	}
	for name, pw := range map[string]string{"w001": "wpw1", "w003": "changed", "w120": "wpw120"} {
		if _, err := e.login(name, pw); err != nil {
			t.Errorf("login %s: %v", name, err)
		}
	}
	for _, name := range []string{"w002", "x0001", "x0500"} {
		if _, ok, _ := e.a.getUser(name); ok {
			t.Errorf("%s imported", name)
		}
	}
}

// TestWALAfterReset: frames left from before a reset have the old salts and end the WAL.
func TestWALAfterReset(t *testing.T) {
	image, frames, err := ReadULWMQFile(filepath.Join("testdata", "walreset.db"))
	if err != nil {
		t.Fatal(err)
	}
	commits, valid := walFrameInfo(t, readTestdata(t, "walreset.db-wal"))
	wal := readTestdata(t, "walreset.db-wal")
	if len(commits) != 1 || frames != valid || walHeaderSize+valid*(24+512) >= len(wal) {
		t.Fatalf("frames %d, commits %v, %d valid of %d bytes: the fixture should hold stale frames", frames, commits, valid, len(wal))
	}
	users := usersOf(t, image)
	if len(users) != 60 || users["zed"] != sha("zed-pw") || users["r01"] != "" || users["r60"] != sha("rpw60") {
		t.Fatalf("%d users, zed %q, r01 %q", len(users), users["zed"], users["r01"])
	}
	// The database file alone (no WAL beside it) is what was checkpointed: r01, no zed. Read
	// from disk it is not refused: a missing WAL means there is nothing in one.
	dir := t.TempDir()
	alone := filepath.Join(dir, "users.db")
	if err := os.WriteFile(alone, readTestdata(t, "walreset.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	image, frames, err = ReadULWMQFile(alone)
	if err != nil || frames != 0 || walMode(image) {
		t.Fatalf("alone: %d frames, %v, WAL mode %v", frames, err, walMode(image))
	}
	if users := usersOf(t, image); len(users) != 60 || users["r01"] == "" || users["zed"] != "" {
		t.Fatalf("checkpointed part: %d users", len(users))
	}
	// The text form passes through untouched.
	text := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(text, []byte("alice|"+sha("a")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _, err := ReadULWMQFile(text); err != nil || len(usersOf(t, b)) != 1 {
		t.Fatalf("text form: %v", err)
	}
	if _, _, err := ReadULWMQFile(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// reChecksum rewrites a WAL's checksums for the other byte order (magic included), as a WAL
// written on a big-endian machine would have them.
func reChecksum(wal []byte, magic uint32) []byte {
	out := bytes.Clone(wal)
	order := binary.ByteOrder(binary.LittleEndian)
	if magic == walMagicBE {
		order = binary.BigEndian
	}
	binary.BigEndian.PutUint32(out, magic)
	s0, s1 := walChecksum(order, 0, 0, out[:24])
	binary.BigEndian.PutUint32(out[24:], s0)
	binary.BigEndian.PutUint32(out[28:], s1)
	ps := int(binary.BigEndian.Uint32(out[8:]))
	for off := walHeaderSize; off+24+ps <= len(out); off += 24 + ps {
		if !bytes.Equal(out[off+8:off+16], out[16:24]) {
			break
		}
		s0, s1 = walChecksum(order, s0, s1, out[off:off+8])
		s0, s1 = walChecksum(order, s0, s1, out[off+24:off+24+ps])
		binary.BigEndian.PutUint32(out[off+16:], s0)
		binary.BigEndian.PutUint32(out[off+20:], s1)
	}
	return out
}

// TestWALDamage: what breaks the chain ends the WAL at the commit before it, as for SQLite; what
// SQLite cannot open is an error; nothing panics.
func TestWALDamage(t *testing.T) {
	db, wal := readTestdata(t, "wal.db"), readTestdata(t, "wal.db-wal")
	const fs = 24 + 512
	commits, _ := walFrameInfo(t, wal)
	full, _, err := applyWAL(db, wal, maxImportBytes)
	if err != nil {
		t.Fatal(err)
	}
	// Without the last transaction (the delete of w002 and the update of w003).
	last, prev := commits[len(commits)-1], commits[len(commits)-2]
	before := usersOf(t, mustApply(t, db, wal[:walHeaderSize+(prev+1)*fs]))
	if len(before) != 120 || before["w003"] != sha("wpw3") {
		t.Fatalf("before the last transaction: %d users, w003 %q", len(before), before["w003"])
	}
	cases := map[string]struct {
		wal  func() []byte
		want map[string]string // nil: the database file alone, which has no users table
	}{
		"cut inside the last commit frame": {func() []byte { return wal[:walHeaderSize+(last+1)*fs-1] }, before},
		"a flipped byte in the last transaction": {func() []byte {
			w := bytes.Clone(wal)
			w[walHeaderSize+last*fs+24+100] ^= 1
			return w
		}, before},
		"a frame with another salt": {func() []byte {
			w := bytes.Clone(wal)
			w[walHeaderSize+last*fs+8] ^= 1
			return w
		}, before},
		// Valid frames, salts and checksums, but no commit frame: a transaction in progress.
		"the last transaction without its commit": {func() []byte {
			w := bytes.Clone(wal[:walHeaderSize+(last+1)*fs])
			binary.BigEndian.PutUint32(w[walHeaderSize+last*fs+4:], 0)
			return reChecksum(w, walMagicLE)
		}, before},
		"big-endian checksums":      {func() []byte { return reChecksum(wal, walMagicBE) }, usersOf(t, full)},
		"header checksum wrong":     {func() []byte { w := bytes.Clone(wal); w[24] ^= 1; return w }, nil},
		"unknown magic":             {func() []byte { w := bytes.Clone(wal); w[0] = 0; return w }, nil},
		"header only":               {func() []byte { return wal[:walHeaderSize] }, nil},
		"shorter than a header":     {func() []byte { return wal[:10] }, nil},
		"a bad page size is no WAL": {func() []byte { return withHeader(wal, 8, 1000) }, nil},
	}
	for name, c := range cases {
		image, _, err := applyWAL(db, c.wal(), maxImportBytes)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.want == nil {
			if _, _, err := parseULWMQ(image); err == nil || !strings.Contains(err.Error(), "no table") {
				t.Errorf("%s: the WAL was used (%v)", name, err)
			}
			continue
		}
		if got := usersOf(t, image); len(got) != len(c.want) || got["w003"] != c.want["w003"] || got["w002"] != c.want["w002"] {
			t.Errorf("%s: %d users, w003 %q", name, len(got), got["w003"])
		}
	}
	otherSize := bytes.Clone(db)
	otherSize[16], otherSize[17] = 4, 0 // the database file says 1024-byte pages, the WAL 512
	for name, c := range map[string]struct {
		db, wal []byte
		limit   int
	}{
		"unknown version":      {db, withHeader(wal, 4, 3007001), maxImportBytes},
		"another page size":    {otherSize, wal, maxImportBytes},
		"image over the limit": {db, wal, 4096},
	} {
		if _, _, err := applyWAL(c.db, c.wal, c.limit); !errors.Is(err, errSQLite) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// No database file at all: page 1 comes from the WAL too.
	if got := usersOf(t, mustApply(t, nil, wal)); len(got) != 119 {
		t.Errorf("from the WAL alone: %d users", len(got))
	}
	if _, _, err := applyWAL([]byte("not a database"), wal, maxImportBytes); !errors.Is(err, errSQLite) {
		t.Errorf("a database file without a header: %v", err)
	}
}

// withHeader sets one 32-bit field of a WAL header and fixes the header checksum, so only that
// field is wrong.
func withHeader(wal []byte, off int, v uint32) []byte {
	w := bytes.Clone(wal)
	binary.BigEndian.PutUint32(w[off:], v)
	s0, s1 := walChecksum(binary.LittleEndian, 0, 0, w[:24])
	binary.BigEndian.PutUint32(w[24:], s0)
	binary.BigEndian.PutUint32(w[28:], s1)
	return w
}

func mustApply(t testing.TB, db, wal []byte) []byte {
	t.Helper()
	image, _, err := applyWAL(db, wal, maxImportBytes)
	if err != nil {
		t.Fatal(err)
	}
	return image
}
