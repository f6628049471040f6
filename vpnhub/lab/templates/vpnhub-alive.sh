#!/bin/sh
# keepalived's vrrp_script for vpnhub cluster member @MEMBER@ (generated from
# vpnhub/lab/templates/vpnhub-alive.sh): exit 0 while the vpnhub process written in
# @PIDFILE@ ("PID STARTTIME", field 22 of /proc/PID/stat) runs and is no zombie.
# The start time tells it from a later process that reused the PID.
read -r pid start < "@PIDFILE@" || exit 1
read -r stat < "/proc/$pid/stat" || exit 1
# the fields after the command name: $1 is the state (field 3), ${20} the start time
set -- ${stat##*) }
[ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$start" ]
