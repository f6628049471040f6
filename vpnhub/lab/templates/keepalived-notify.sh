#!/bin/sh
# keepalived's notify script for vpnhub cluster member @MEMBER@ (generated from
# vpnhub/lab/templates/keepalived-notify.sh): one line per VRRP state change,
# "TIME TYPE NAME STATE PRIORITY", so a lab can show when the address moved.
echo "$(date +%s.%N) $*" >> "@LOG@"
