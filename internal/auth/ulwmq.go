package auth

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
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
// Rows still in a write-ahead log (users.db-wal) are not seen; copy the database with sqlite3's
// .backup first if uLightWMQ may be running.
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
