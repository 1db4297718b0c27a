package auth

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxImportBytes bounds what ImportULWMQ reads: a users.db of a million users is far smaller.
const maxImportBytes = 256 << 20

// ulwmqRow is one user from a uLightWMQ users.db.
type ulwmqRow struct {
	name string
	hash string // 64 lower-case hex digits
}

// ImportULWMQ adds the users of a uLightWMQ users.db. r is either the SQLite database file itself
// (table users(user, hash, cdate)) or the text that `sqlite3 users.db "SELECT user, hash FROM
// users"` prints: one "user|hash" per line (further |-separated columns, blank lines and lines
// starting with '#' are ignored).
//
// The hashes are unsalted SHA-256; each imported user signs in with its old password and is
// re-hashed with argon2id at its first successful login. Rows uLightWMQ itself would never have
// let in are skipped, since importing them would grant access that did not exist: a name that is
// not entirely [a-z0-9] (uLightWMQ matches the lower-cased login name and then refuses any other
// character), or a hash that is not 64 hex digits. Users that already exist are skipped too, so
// that an import cannot overwrite a newer password, and a user named "token", a name reserved
// here. Imported users join groups.
//
// A database file in WAL mode is refused (ErrWALMode): its latest rows may be in users.db-wal,
// which r does not carry. ReadULWMQFile reads a database together with its WAL into an image
// that r can be.
func (a *Authenticator) ImportULWMQ(r io.Reader, groups ...string) (imported, skipped int, err error) {
	for _, g := range groups {
		if err := validName("group", g); err != nil {
			return 0, 0, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return 0, 0, err
	}
	if len(data) > maxImportBytes {
		return 0, 0, fmt.Errorf("auth: users.db larger than %d bytes", maxImportBytes)
	}
	if bytes.HasPrefix(data, []byte(sqliteMagic)) && walMode(data) {
		return 0, 0, ErrWALMode
	}
	rows, bad, err := parseULWMQ(data)
	if err != nil {
		return 0, 0, err
	}
	skipped = bad
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	now := a.now().UTC()
	for _, row := range rows {
		if validUserName(row.name) != nil { // "token" is reserved here
			skipped++
			continue
		}
		_, exists, err := a.getUser(row.name)
		if err != nil {
			return imported, skipped, err
		}
		if exists {
			skipped++
			continue
		}
		rec := userRecord{Name: row.name, Hash: legacyPrefix + row.hash, Groups: groups, Created: now}
		if err := a.putUser(rec); err != nil {
			return imported, skipped, err
		}
		imported++
		a.open.Store(false)
	}
	if skipped > 0 {
		a.log.Warn("auth: users.db rows skipped", "skipped", skipped, "imported", imported)
	}
	return imported, skipped, nil
}

// ErrWALMode refuses a users.db in WAL mode given without its WAL.
var ErrWALMode = errors.New("auth: this users.db is in WAL mode, and rows still in its users.db-wal " +
	"would be missed: import it with `tern user import-ulwmq PATH/users.db` where the file is (that " +
	"reads users.db-wal beside it), or send a copy made with " +
	"`sqlite3 users.db \"VACUUM INTO 'users-copy.db'\"`, which holds everything")

// ReadULWMQFile reads a uLightWMQ users.db from disk for ImportULWMQ. A SQLite database in WAL
// mode is read together with the "-wal" file beside it, if there is one, as SQLite itself would
// open it: the image returned holds the committed transactions of both and is no longer marked
// WAL mode. frames says how many WAL frames it took. Any other file is returned as it is.
//
// Reading two files is not atomic: while uLightWMQ writes, a checkpoint between the two reads can
// leave them inconsistent (the reader then refuses a damaged b-tree, or misses recent rows). Stop
// it first, or read a copy made with `sqlite3 users.db "VACUUM INTO 'users-copy.db'"`.
func ReadULWMQFile(path string) (image []byte, frames int, err error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, 0, err
	}
	if !bytes.HasPrefix(data, []byte(sqliteMagic)) || !walMode(data) {
		return data, 0, nil
	}
	wal, err := readBounded(path + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		wal, err = nil, nil // closed cleanly: everything is in the database file
	}
	if err != nil {
		return nil, 0, err
	}
	image, frames, err = applyWAL(data, wal, maxImportBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("%s with %s-wal: %w", path, filepath.Base(path), err)
	}
	return image, frames, nil
}

// readBounded reads a file of at most maxImportBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImportBytes {
		return nil, fmt.Errorf("auth: %s is larger than %d bytes", path, maxImportBytes)
	}
	return data, nil
}

// parseULWMQ reads either form of users.db. bad counts rows that were skipped as unusable.
func parseULWMQ(data []byte) (rows []ulwmqRow, bad int, err error) {
	if bytes.HasPrefix(data, []byte(sqliteMagic)) {
		return parseULWMQSQLite(data)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, "|")
		if !ok {
			return nil, 0, fmt.Errorf("auth: users.db line %q is not user|hash", line)
		}
		hash, _, _ := strings.Cut(rest, "|")
		if row, ok := ulwmqUser(name, hash); ok {
			rows = append(rows, row)
		} else {
			bad++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("auth: users.db: %w", err)
	}
	return rows, bad, nil
}

func parseULWMQSQLite(data []byte) (rows []ulwmqRow, bad int, err error) {
	db, err := openSQLite(data)
	if err != nil {
		return nil, 0, err
	}
	root, sql, err := db.findTable("users")
	if err != nil {
		return nil, 0, err
	}
	userCol, hashCol := columnIndex(sql, "user"), columnIndex(sql, "hash")
	if userCol < 0 || hashCol < 0 {
		userCol, hashCol = 0, 1 // uLightWMQ's own schema, if the statement did not parse
	}
	err = db.scanTable(root, func(rec []sqlValue) error {
		if userCol >= len(rec) || hashCol >= len(rec) || rec[userCol].null || rec[hashCol].null {
			bad++
			return nil
		}
		if row, ok := ulwmqUser(rec[userCol].text, rec[hashCol].text); ok {
			rows = append(rows, row)
		} else {
			bad++
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return rows, bad, nil
}

// ulwmqUser checks one row as uLightWMQ would have.
func ulwmqUser(name, hash string) (ulwmqRow, bool) {
	if name == "" || len(name) > maxNameLen {
		return ulwmqRow{}, false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return ulwmqRow{}, false
		}
	}
	hash = strings.ToLower(hash)
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		return ulwmqRow{}, false
	}
	return ulwmqRow{name: name, hash: hash}, true
}
