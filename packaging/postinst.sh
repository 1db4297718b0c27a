#!/bin/sh
# Installed or upgraded: systemd learns the unit; the service is enabled and started where systemd
# runs (not in a container without it).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable tern.service >/dev/null
	systemctl restart tern.service
fi
