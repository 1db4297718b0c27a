package auth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// testdata/users.db comes from testdata/gen-users-db.sh (the real sqlite3 tool), so the reader is
// checked against files SQLite itself wrote: 512-byte pages, interior pages, an overflow chain.
func readFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/users.db")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportULWMQSQLite(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	n, skipped, err := e.a.ImportULWMQ(bytes.NewReader(readFixture(t)), "imported")
	if err != nil {
		t.Fatal(err)
	}
	// 300 numbered users and carol. Bob (upper case), d.ave (a dot), erin (no hash) and frank
	// (NULL) could never sign in to uLightWMQ; the 700-character name is longer than tern's
	// names may be (TestSQLiteOverflow checks that it was read right).
	if n != 301 || skipped != 5 {
		t.Fatalf("imported %d, skipped %d", n, skipped)
	}
	for name, pw := range map[string]string{
		"u0001": "pw1", "u0150": "pw150", "u0300": "pw300", "carol": "carol-pw",
	} {
		p, err := e.login(name, pw)
		if err != nil {
			t.Fatalf("login %s: %v", name, err)
		}
		if len(p.Groups) != 1 || p.Groups[0] != "imported" {
			t.Fatalf("groups = %v", p.Groups)
		}
	}
	for _, name := range []string{"Bob", "bob", "d.ave", "erin", "frank"} {
		if _, ok, _ := e.a.getUser(name); ok {
			t.Errorf("%s imported", name)
		}
	}
	if _, err := e.login("u0002", "pw3"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password of an imported user: %v", err)
	}
}

func TestSQLiteSmall(t *testing.T) {
	b, err := os.ReadFile("testdata/small.db")
	if err != nil {
		t.Fatal(err)
	}
	rows, bad, err := parseULWMQ(b)
	if err != nil || bad != 0 || len(rows) != 2 || rows[0].name != "alice" || rows[1].name != "bob" ||
		rows[0].hash != "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7" {
		t.Fatalf("rows %+v, bad %d, err %v", rows, bad, err)
	}
}

func TestSQLiteOverflow(t *testing.T) {
	db, err := openSQLite(readFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := db.findTable("users")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 700)
	rows, found := 0, false
	err = db.scanTable(root, func(rec []sqlValue) error {
		rows++
		if rec[0].text == long {
			found = rec[1].text == "fc66f021c67d064c1490a12b5a4d4d2f5167ca692a16ca12f1f3a4cda29a6fa9" // sha256("long")
		}
		return nil
	})
	if err != nil || rows != 306 || !found {
		t.Fatalf("rows %d, long row found %v, err %v", rows, found, err)
	}
}

func TestSQLiteReaderRejectsDamage(t *testing.T) {
	good := readFixture(t)
	if _, _, err := parseULWMQ(good); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"truncated header": good[:99],
		"page size":        mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 1000); return b }),
		"reserved space":   mutate(func(b []byte) []byte { b[20] = 100; return b }),
		"utf-16":           mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[56:], 2); return b }),
		"truncated file":   good[:len(good)/2],
		"schema page type": mutate(func(b []byte) []byte { b[100] = 0x0a; return b }),
		"cell count":       mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[103:], 0xffff); return b }),
		"no users table": mutate(func(b []byte) []byte {
			i := bytes.Index(b, []byte("tableusersusers"))
			copy(b[i:], "tablexxxxxxxxxx")
			return b
		}),
	}
	for name, data := range cases {
		if _, _, err := parseULWMQ(data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Every page pointing to itself must be caught, not followed forever.
	loop := mutate(func(b []byte) []byte {
		for p := 512; p+512 <= len(b); p += 512 {
			if b[p] == 0x05 {
				binary.BigEndian.PutUint32(b[p+8:], uint32(p/512+1))
			}
		}
		return b
	})
	if _, _, err := parseULWMQ(loop); err == nil {
		t.Error("b-tree loop not detected")
	}
}

func TestSQLiteVarintAndRecord(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want uint64
		n    int
	}{
		{[]byte{0x05}, 5, 1},
		{[]byte{0x81, 0x00}, 128, 2},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1<<64 - 1, 9},
		{[]byte{0x81}, 0, 0},
		{nil, 0, 0},
	} {
		if v, n := sqliteVarint(c.in); v != c.want || n != c.n {
			t.Errorf("varint %x = %d,%d want %d,%d", c.in, v, n, c.want, c.n)
		}
	}
	// Header: size 8, types NULL, int8, int16, 0, 1, text(2), float, blob(1).
	rec := []byte{9, 0, 1, 2, 8, 9, 17, 7, 14, 0xff, 0x01, 0x00, 'h', 'i', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 'z'}
	vals, err := decodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vals {
		if v.null {
			got = append(got, "NULL")
		} else {
			got = append(got, v.text)
		}
	}
	if s := fmt.Sprint(got); s != "[NULL -1 256 0 1 hi 1.5 z]" {
		t.Fatalf("record = %s", s)
	}
	for _, bad := range [][]byte{{}, {5, 1}, {2, 10}, {2, 21, 'a'}, {0x80}} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("record %x decoded", bad)
		}
	}
}

func TestColumnIndex(t *testing.T) {
	sql := "CREATE TABLE users (user VARCHAR(256) PRIMARY KEY, hash VARCHAR(512), cdate DATETIME DEFAULT CURRENT_TIMESTAMP)"
	if columnIndex(sql, "user") != 0 || columnIndex(sql, "hash") != 1 || columnIndex(sql, "cdate") != 2 || columnIndex(sql, "x") != -1 {
		t.Error("uLightWMQ schema")
	}
	sql = `CREATE TABLE "users" (id INTEGER, CONSTRAINT c CHECK(x > 0), "hash" TEXT, [user] TEXT, PRIMARY KEY(id, user))`
	if columnIndex(sql, "hash") != 1 || columnIndex(sql, "user") != 2 {
		t.Error("quoted names and table constraints")
	}
	if columnIndex("garbage", "user") != -1 {
		t.Error("no column list")
	}
}

func TestImportSkipsReservedName(t *testing.T) {
	e := newEnv(t, nil)
	in := "token|f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7\n"
	if n, skipped, err := e.a.ImportULWMQ(strings.NewReader(in)); n != 0 || skipped != 1 || err != nil {
		t.Fatalf("import = %d, %d, %v", n, skipped, err)
	}
}
