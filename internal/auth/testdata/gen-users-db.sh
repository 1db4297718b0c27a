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
