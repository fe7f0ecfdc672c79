#!/bin/sh
# geryon-node.sh: a machine's start-up script for joining a Geryon cluster.
#
# Serves every chunk disk under $GERYON_DISKS (one directory per chunk, named by its
# directory: /var/lib/geryon/disks/c0 is served as chunk c0, named in ndb as
# master=$(hostname)!c0) and this machine's cpus, and registers them with the registry.
# Settings come from /etc/default/geryon-node if it exists:
#   GERYON_DISKS=/var/lib/geryon/disks   where the chunks live
#   GERYON_REGISTRY=tcp!registry!6675    the registry (unset: find it over zeroconf)
#   GERYON_SECRET_FILE=/etc/geryon/secret   the cluster secret (mode 0600)
#   GERYON_NODE_NAME=$(hostname)         this node's name in ndb
#   GERYON_LISTEN=0.0.0.0:6676           where to listen
#   GERYON_CPUS=                         cores offered (default: all)
#   GERYON_WORK=/var/lib/geryon/work     run directories and the export cache
#   GERYON=geryon                        the geryon command (e.g. /opt/geryon/bin/geryon)
set -eu

GERYON_DEFAULTS=${GERYON_DEFAULTS:-/etc/default/geryon-node}
[ -r "$GERYON_DEFAULTS" ] && . "$GERYON_DEFAULTS"

GERYON=${GERYON:-geryon}
GERYON_DISKS=${GERYON_DISKS:-/var/lib/geryon/disks}
GERYON_NODE_NAME=${GERYON_NODE_NAME:-$(hostname)}
GERYON_LISTEN=${GERYON_LISTEN:-0.0.0.0:6676}
GERYON_WORK=${GERYON_WORK:-/var/lib/geryon/work}
export GERYON_SECRET_FILE=${GERYON_SECRET_FILE:-/etc/geryon/secret}
[ -n "${GERYON_REGISTRY:-}" ] && export GERYON_REGISTRY

set -- --name "$GERYON_NODE_NAME" --listen "$GERYON_LISTEN" --work-dir "$GERYON_WORK"
[ -n "${GERYON_CPUS:-}" ] && set -- "$@" --cpus "$GERYON_CPUS"

mkdir -p "$GERYON_DISKS" "$GERYON_WORK"
for dir in "$GERYON_DISKS"/*/; do
	[ -d "$dir" ] || continue
	name=$(basename "$dir")
	# A chunk disk has a .geryon-disk file; make one (64M) for a bare directory.
	[ -e "$dir/.geryon-disk" ] || "$GERYON" disk new --size 64M "$dir" >/dev/null
	set -- "$@" --disk "$name=$dir"
done

# exec: systemd's SIGTERM reaches the node, which unregisters before exiting.
exec "$GERYON" node "$@"
