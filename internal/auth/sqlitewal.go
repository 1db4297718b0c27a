package auth

import "encoding/binary"

// A database in WAL mode keeps its latest transactions in a second file, "<name>-wal", until a
// checkpoint copies them into the database file. uLightWMQ's users.db may be in that mode, so a
// copy of the database file alone can lack users, or even the users table. applyWAL does what
// SQLite does when it opens such a database after a crash: it reads the WAL's frames in order
// while their salts match the WAL header's and their checksum chain holds, keeps those up to the
// last commit frame, and lays each frame's page over the database image, later frames winning
// (https://www.sqlite.org/fileformat2.html#the_write_ahead_log).

const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682 // checksums computed on little-endian words
	walMagicBE         = 0x377f0683 // checksums computed on big-endian words
	walVersion         = 3007000
)

// walMode reports whether a SQLite database header says WAL mode (file format version numbers 2).
func walMode(db []byte) bool {
	return len(db) >= 20 && (db[18] == 2 || db[19] == 2)
}

// walChecksum continues SQLite's WAL checksum (s0, s1) over b, whose length is a multiple of 8,
// reading 32-bit words in the given byte order.
func walChecksum(order binary.ByteOrder, s0, s1 uint32, b []byte) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s0 += order.Uint32(b[i:]) + s1
		s1 += order.Uint32(b[i+4:]) + s0
	}
	return s0, s1
}

// applyWAL returns the database image that db (the database file, possibly empty) and wal (its
// -wal file) hold together, and how many WAL frames it took. The image's header is switched to
// rollback-journal mode (bytes 18 and 19 set to 1), so it stands alone: nothing in it is left
// waiting in a WAL. A WAL whose header is short, unknown or fails its checksum holds nothing, as
// for SQLite; the image may be at most limit bytes.
func applyWAL(db, wal []byte, limit int) (image []byte, frames int, err error) {
	if len(db) > 0 {
		if len(db) < 100 || string(db[:16]) != sqliteMagic {
			return nil, 0, sqliteErr("no SQLite header")
		}
	}
	dbPageSize := 0
	if len(db) > 0 {
		dbPageSize = int(binary.BigEndian.Uint16(db[16:18]))
		if dbPageSize == 1 {
			dbPageSize = 65536
		}
	}
	pageSize, used, dbPages, err := walFrames(wal)
	if err != nil {
		return nil, 0, err
	}
	if used == 0 {
		out := append([]byte(nil), db...)
		standAlone(out)
		return out, 0, nil
	}
	if dbPageSize != 0 && pageSize != dbPageSize {
		return nil, 0, sqliteErr("WAL page size %d differs from the database's %d", pageSize, dbPageSize)
	}
	if uint64(dbPages)*uint64(pageSize) > uint64(limit) {
		return nil, 0, sqliteErr("WAL makes the database %d pages of %d bytes, more than %d bytes", dbPages, pageSize, limit)
	}
	out := make([]byte, int(dbPages)*pageSize)
	copy(out, db) // pages past the new size are dropped; pages the WAL does not hold stay
	frameSize := walFrameHeaderSize + pageSize
	for i := range used {
		f := wal[walHeaderSize+i*frameSize:]
		pg := binary.BigEndian.Uint32(f)
		if pg > dbPages {
			continue // a page a later transaction cut off (the database shrank)
		}
		copy(out[int(pg-1)*pageSize:], f[walFrameHeaderSize:frameSize])
	}
	if len(out) < 100 || string(out[:16]) != sqliteMagic {
		return nil, 0, sqliteErr("no SQLite header after applying the WAL")
	}
	standAlone(out)
	return out, used, nil
}

// standAlone marks an image as a rollback-journal database.
func standAlone(img []byte) {
	if walMode(img) {
		img[18], img[19] = 1, 1
	}
}

// walFrames validates the WAL and returns its page size, the number of leading frames that belong
// to committed transactions, and the database size in pages that the last of them set. used is 0
// when the WAL holds nothing usable.
func walFrames(wal []byte) (pageSize, used int, dbPages uint32, err error) {
	if len(wal) < walHeaderSize {
		return 0, 0, 0, nil
	}
	var order binary.ByteOrder
	switch binary.BigEndian.Uint32(wal) {
	case walMagicLE:
		order = binary.LittleEndian
	case walMagicBE:
		order = binary.BigEndian
	default:
		return 0, 0, 0, nil
	}
	pageSize = int(binary.BigEndian.Uint32(wal[8:]))
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return 0, 0, 0, nil
	}
	s0, s1 := walChecksum(order, 0, 0, wal[:24])
	if s0 != binary.BigEndian.Uint32(wal[24:]) || s1 != binary.BigEndian.Uint32(wal[28:]) {
		return 0, 0, 0, nil
	}
	// SQLite refuses to open a database whose WAL has a version it does not know.
	if v := binary.BigEndian.Uint32(wal[4:]); v != walVersion {
		return 0, 0, 0, sqliteErr("WAL format version %d", v)
	}
	salt1, salt2 := binary.BigEndian.Uint32(wal[16:]), binary.BigEndian.Uint32(wal[20:])
	frameSize := walFrameHeaderSize + pageSize
	for i := 0; walHeaderSize+(i+1)*frameSize <= len(wal); i++ {
		f := wal[walHeaderSize+i*frameSize : walHeaderSize+(i+1)*frameSize]
		pg, commit := binary.BigEndian.Uint32(f), binary.BigEndian.Uint32(f[4:])
		if pg == 0 || binary.BigEndian.Uint32(f[8:]) != salt1 || binary.BigEndian.Uint32(f[12:]) != salt2 {
			break // the end of this WAL's frames: what follows is left from before a reset
		}
		s0, s1 = walChecksum(order, s0, s1, f[:8])
		s0, s1 = walChecksum(order, s0, s1, f[walFrameHeaderSize:])
		if s0 != binary.BigEndian.Uint32(f[16:]) || s1 != binary.BigEndian.Uint32(f[20:]) {
			break // torn or stale: nothing after it counts
		}
		if commit != 0 {
			used, dbPages = i+1, commit
		}
	}
	return pageSize, used, dbPages, nil
}
