package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A read-only reader for the one thing ImportULWMQ needs from a SQLite 3 database file: the rows
// of a table. uLightWMQ keeps its users in such a file, and reading it directly spares the
// operator a conversion step and tern a SQLite dependency. It follows the file format
// (https://www.sqlite.org/fileformat2.html) for rowid tables in UTF-8 databases: table b-tree
// pages, overflow chains and records. The input is untrusted, so every offset is checked, every
// page is visited once, and the bytes decoded are bounded by the file's size.

const sqliteMagic = "SQLite format 3\x00"

var errSQLite = errors.New("auth: malformed SQLite file")

func sqliteErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSQLite, fmt.Sprintf(format, args...))
}

type sqliteDB struct {
	data   []byte
	size   int // page size
	usable int // page size minus the reserved bytes at the end of each page
	pages  uint32
	// budget is what is left of the payload bytes a scan may copy. A well-formed file stores every
	// payload byte once, so more than the file's size means cells share overflow pages.
	budget int
}

func openSQLite(data []byte) (*sqliteDB, error) {
	if len(data) < 100 || string(data[:16]) != sqliteMagic {
		return nil, sqliteErr("no SQLite header")
	}
	size := int(binary.BigEndian.Uint16(data[16:18]))
	if size == 1 {
		size = 65536
	}
	if size < 512 || size > 65536 || size&(size-1) != 0 {
		return nil, sqliteErr("page size %d", size)
	}
	usable := size - int(data[20])
	if usable < 480 {
		return nil, sqliteErr("usable page size %d", usable)
	}
	if enc := binary.BigEndian.Uint32(data[56:60]); enc > 1 {
		return nil, sqliteErr("text encoding %d: only UTF-8 databases are supported", enc)
	}
	return &sqliteDB{data: data, size: size, usable: usable, pages: uint32(len(data) / size), budget: len(data) + 1<<16}, nil
}

// page returns page n (1-based), cut to the usable size, and where its b-tree header starts.
func (db *sqliteDB) page(n uint32) ([]byte, int, error) {
	if n < 1 || n > db.pages {
		return nil, 0, sqliteErr("page %d out of range", n)
	}
	off := int(n-1) * db.size
	hdr := 0
	if n == 1 {
		hdr = 100 // the file header shares the first page
	}
	return db.data[off : off+db.usable], hdr, nil
}

// sqliteVarint decodes a SQLite varint (big-endian, 7 bits a byte, the ninth byte whole). n is 0
// if b ends first.
func sqliteVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 9 && i < len(b); i++ {
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// scanTable calls fn with the record of every row of the table b-tree rooted at root.
func (db *sqliteDB) scanTable(root uint32, fn func([]sqlValue) error) error {
	seen := make(map[uint32]bool)
	var walk func(n uint32, depth int) error
	walk = func(n uint32, depth int) error {
		if depth > 32 {
			return sqliteErr("b-tree deeper than 32")
		}
		if seen[n] {
			return sqliteErr("page %d reached twice", n)
		}
		seen[n] = true
		p, h, err := db.page(n)
		if err != nil {
			return err
		}
		if h+12 > len(p) {
			return sqliteErr("page %d too short", n)
		}
		kind, cells := p[h], int(binary.BigEndian.Uint16(p[h+3:]))
		var ptrs int
		switch kind {
		case 0x0d: // leaf table page
			ptrs = h + 8
		case 0x05: // interior table page
			ptrs = h + 12
		default:
			return sqliteErr("page %d is not a table b-tree page (type %#x)", n, kind)
		}
		if ptrs+2*cells > len(p) {
			return sqliteErr("page %d: cell pointers past the page", n)
		}
		for i := range cells {
			off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
			if off < ptrs+2*cells || off >= len(p) {
				return sqliteErr("page %d: cell %d at %d", n, i, off)
			}
			if kind == 0x05 {
				if off+4 > len(p) {
					return sqliteErr("page %d: cell %d truncated", n, i)
				}
				if err := walk(binary.BigEndian.Uint32(p[off:]), depth+1); err != nil {
					return err
				}
				continue
			}
			plen, k := sqliteVarint(p[off:])
			if k == 0 {
				return sqliteErr("page %d: cell %d truncated", n, i)
			}
			off += k
			if _, k = sqliteVarint(p[off:]); k == 0 { // rowid, unused
				return sqliteErr("page %d: cell %d truncated", n, i)
			}
			off += k
			payload, err := db.payload(p, off, plen)
			if err != nil {
				return err
			}
			rec, err := decodeRecord(payload)
			if err != nil {
				return err
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if kind == 0x05 {
			return walk(binary.BigEndian.Uint32(p[h+8:]), depth+1)
		}
		return nil
	}
	return walk(root, 0)
}

// payload assembles a cell's payload of plen bytes starting at off in page p, following the
// overflow chain when it does not fit (the split is the one the file format prescribes).
func (db *sqliteDB) payload(p []byte, off int, plen uint64) ([]byte, error) {
	if plen > uint64(db.budget) {
		return nil, sqliteErr("payloads longer than the file")
	}
	total := int(plen)
	db.budget -= total
	u := db.usable
	local := total
	if maxLocal := u - 35; total > maxLocal {
		minLocal := (u-12)*32/255 - 23
		local = minLocal + (total-minLocal)%(u-4)
		if local > maxLocal {
			local = minLocal
		}
	}
	if off+local > len(p) {
		return nil, sqliteErr("payload past its page")
	}
	out := make([]byte, 0, total)
	out = append(out, p[off:off+local]...)
	if local == total {
		return out, nil
	}
	if off+local+4 > len(p) {
		return nil, sqliteErr("overflow pointer past its page")
	}
	next := binary.BigEndian.Uint32(p[off+local:])
	// Each overflow page carries u-4 bytes, so the chain's length follows from total; a loop in a
	// corrupt chain therefore ends when out is full, and the budget bounds the sum.
	for len(out) < total {
		if next == 1 {
			return nil, sqliteErr("overflow chain reaches page 1")
		}
		op, _, err := db.page(next)
		if err != nil {
			return nil, err
		}
		k := min(total-len(out), u-4)
		out = append(out, op[4:4+k]...)
		next = binary.BigEndian.Uint32(op)
	}
	return out, nil
}

// sqlValue is one column of a record. Only what the import needs is distinguished.
type sqlValue struct {
	null bool
	text string // TEXT and BLOB contents, or an integer or real in decimal
}

// decodeRecord splits a record into its values.
func decodeRecord(b []byte) ([]sqlValue, error) {
	hlen, n := sqliteVarint(b)
	if n == 0 || hlen < uint64(n) || hlen > uint64(len(b)) {
		return nil, sqliteErr("record header")
	}
	types, body := b[n:hlen], b[hlen:]
	var out []sqlValue
	for len(types) > 0 {
		t, k := sqliteVarint(types)
		if k == 0 {
			return nil, sqliteErr("record header")
		}
		types = types[k:]
		var size uint64
		switch {
		case t == 0 || t == 8 || t == 9:
			size = 0
		case t <= 4:
			size = t
		case t == 5:
			size = 6
		case t == 6 || t == 7:
			size = 8
		case t >= 12:
			size = (t - 12) / 2
		default:
			return nil, sqliteErr("reserved serial type %d", t)
		}
		if size > uint64(len(body)) {
			return nil, sqliteErr("record body too short")
		}
		v, raw := sqlValue{}, body[:size]
		body = body[size:]
		switch {
		case t == 0:
			v.null = true
		case t == 8, t == 9:
			v.text = strconv.Itoa(int(t - 8))
		case t <= 6:
			// Big-endian two's complement of 1..8 bytes: sign-extend from the first byte.
			x := int64(int8(raw[0]))
			for _, c := range raw[1:] {
				x = x<<8 | int64(c)
			}
			v.text = strconv.FormatInt(x, 10)
		case t == 7:
			v.text = strconv.FormatFloat(math.Float64frombits(binary.BigEndian.Uint64(raw)), 'g', -1, 64)
		default:
			v.text = string(raw)
		}
		out = append(out, v)
	}
	return out, nil
}

// findTable returns the root page and CREATE statement of a table, from the schema table on
// page 1 (columns type, name, tbl_name, rootpage, sql).
func (db *sqliteDB) findTable(name string) (root uint32, sql string, err error) {
	err = db.scanTable(1, func(rec []sqlValue) error {
		if len(rec) < 5 || rec[0].text != "table" || !strings.EqualFold(rec[1].text, name) {
			return nil
		}
		r, perr := strconv.ParseUint(rec[3].text, 10, 32)
		if perr != nil || r == 0 {
			return sqliteErr("table %s has root page %q", name, rec[3].text)
		}
		root, sql = uint32(r), rec[4].text
		return errStopScan
	})
	if errors.Is(err, errStopScan) {
		return root, sql, nil
	}
	if err == nil {
		err = fmt.Errorf("auth: the database has no table %q", name)
	}
	return 0, "", err
}

// columnIndex finds a column's position from a CREATE TABLE statement, or -1. It knows just
// enough SQL to split the column list at top-level commas and skip table constraints.
func columnIndex(createSQL, column string) int {
	open, end := strings.IndexByte(createSQL, '('), strings.LastIndexByte(createSQL, ')')
	if open < 0 || end < open {
		return -1
	}
	var defs []string
	depth, start := 0, open+1
	for i := open + 1; i < end; i++ {
		switch createSQL[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				defs = append(defs, createSQL[start:i])
				start = i + 1
			}
		}
	}
	defs = append(defs, createSQL[start:end])
	col := 0
	for _, d := range defs {
		f := strings.Fields(d)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT":
			continue
		}
		if strings.EqualFold(strings.Trim(f[0], "\"`[]'"), column) {
			return col
		}
		col++
	}
	return -1
}
