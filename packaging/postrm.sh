#!/bin/sh
# On purge, the broker's state goes too; on remove it stays.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/tern /var/lib/private/tern
fi
