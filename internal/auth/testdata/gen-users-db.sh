#!/bin/sh
# Regenerates users.db, a uLightWMQ user database for the import tests: uLightWMQ's schema, a page
# size of 512 bytes so that 300 users need interior b-tree pages, and a 700-character name whose
# row spills onto overflow pages (too long for tern, so the import skips it). Passwords:
# u0001..u0300 have pw1..pw300, the long name "long", carol "carol-pw" (stored upper-case); the
# last four rows must be skipped too.
set -eu
cd "$(dirname "$0")"
rm -f users.db
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
{
	echo "PRAGMA page_size=512;"
	echo "CREATE TABLE users (user VARCHAR(256) PRIMARY KEY, hash VARCHAR(512), cdate DATETIME DEFAULT CURRENT_TIMESTAMP);"
	echo "CREATE INDEX idx_users_user ON users(user);"
	echo "BEGIN;"
	i=1
	while [ $i -le 300 ]; do
		printf "INSERT INTO users(user, hash) VALUES('u%04d', '%s');\n" $i "$(sha pw$i)"
		i=$((i + 1))
	done
	long=$(printf 'a%.0s' $(seq 700))
	echo "INSERT INTO users(user, hash) VALUES('$long', '$(sha long)');"
	echo "INSERT INTO users(user, hash) VALUES('carol', '$(sha carol-pw | tr a-f A-F)');"
	echo "INSERT INTO users(user, hash) VALUES('Bob', '$(sha bob-pw)');"
	echo "INSERT INTO users(user, hash) VALUES('d.ave', '$(sha dave-pw)');"
	echo "INSERT INTO users(user, hash) VALUES('erin', 'not-a-hash');"
	echo "INSERT INTO users(user, hash) VALUES('frank', NULL);"
	echo "COMMIT;"
} | sqlite3 users.db

# small.db: the same schema with two users in two 512-byte pages, a seed the fuzzer can mutate
# cheaply.
rm -f small.db
{
	echo "PRAGMA page_size=512;"
	echo "CREATE TABLE users (user VARCHAR(256) PRIMARY KEY, hash VARCHAR(512), cdate DATETIME DEFAULT CURRENT_TIMESTAMP);"
	echo "INSERT INTO users(user, hash, cdate) VALUES('alice', '$(sha hunter2)', '2020-01-01 00:00:00');"
	echo "INSERT INTO users(user, hash, cdate) VALUES('bob', '$(sha pw)', '2020-01-01 00:00:00');"
} | sqlite3 small.db

# wal.db and wal.db-wal: a database in WAL mode whose content is all still in the WAL, copied
# while sqlite3 holds it open (closing would checkpoint it into wal.db). 120 users (w001..w120,
# passwords wpw1..wpw120) in three transactions, then w002 deleted and w003 given the hash of
# "changed" in a fourth (with the CREATE TABLE, five commits); then a transaction that is not
# committed (500 users x0001..x0500, spilled to the WAL by a one-page cache) is copied mid-way:
# its frames follow the last commit frame (SQLite writes their checksums only at commit, so the
# first has a stale one and the rest zeros), and a reader must ignore them. wal.db alone holds one
# page and no table.
rm -f wal.db wal.db-wal wal-src.db wal-src.db-wal wal-src.db-shm
{
	echo "PRAGMA page_size=512;"
	echo "PRAGMA journal_mode=WAL;"
	echo "PRAGMA wal_autocheckpoint=0;"
	echo "PRAGMA cache_size=1;"
	echo "CREATE TABLE users (user VARCHAR(256) PRIMARY KEY, hash VARCHAR(512), cdate DATETIME DEFAULT CURRENT_TIMESTAMP);"
	i=1
	while [ $i -le 120 ]; do
		[ $((i % 40)) -eq 1 ] && echo "BEGIN;"
		printf "INSERT INTO users(user, hash, cdate) VALUES('w%03d', '%s', '2020-01-01 00:00:00');\n" $i "$(sha wpw$i)"
		[ $((i % 40)) -eq 0 ] && echo "COMMIT;"
		i=$((i + 1))
	done
	echo "BEGIN; DELETE FROM users WHERE user='w002'; UPDATE users SET hash='$(sha changed)' WHERE user='w003'; COMMIT;"
	echo "BEGIN;"
	i=1
	while [ $i -le 500 ]; do
		printf "INSERT INTO users(user, hash) VALUES('x%04d', '%s');\n" $i "$(sha x)"
		i=$((i + 1))
	done
	echo ".shell cp wal-src.db wal.db && cp wal-src.db-wal wal.db-wal"
	echo "ROLLBACK;"
} | sqlite3 wal-src.db >/dev/null
rm -f wal-src.db wal-src.db-wal wal-src.db-shm

# walreset.db and walreset.db-wal: a WAL that was reset. 60 users (r01..r60, passwords rpw1..rpw60)
# are written and checkpointed into walreset.db; the next transaction (r01 deleted, "zed" with
# password zed-pw added) starts the WAL again from its beginning with new salts, so the frames of
# the first transactions are still in the file after it, with the old salts: a reader that did not
# stop at them would bring r01 back and lose zed.
rm -f walreset.db walreset.db-wal wr-src.db wr-src.db-wal wr-src.db-shm
{
	echo "PRAGMA page_size=512;"
	echo "PRAGMA journal_mode=WAL;"
	echo "PRAGMA wal_autocheckpoint=0;"
	echo "CREATE TABLE users (user VARCHAR(256) PRIMARY KEY, hash VARCHAR(512), cdate DATETIME DEFAULT CURRENT_TIMESTAMP);"
	i=1
	while [ $i -le 60 ]; do
		printf "INSERT INTO users(user, hash, cdate) VALUES('r%02d', '%s', '2020-01-01 00:00:00');\n" $i "$(sha rpw$i)"
		i=$((i + 1))
	done
	echo "PRAGMA wal_checkpoint(PASSIVE);"
	echo "BEGIN; DELETE FROM users WHERE user='r01'; INSERT INTO users(user, hash, cdate) VALUES('zed', '$(sha zed-pw)', '2020-01-01 00:00:00'); COMMIT;"
	echo ".shell cp wr-src.db walreset.db && cp wr-src.db-wal walreset.db-wal"
} | sqlite3 wr-src.db >/dev/null
rm -f wr-src.db wr-src.db-wal wr-src.db-shm
