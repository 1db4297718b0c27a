#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop tern.service || true
fi
