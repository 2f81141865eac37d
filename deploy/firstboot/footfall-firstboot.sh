#!/bin/bash
# footfall first-boot installer: turns a provisioning bundle on the SD card's
# boot partition into an installed, enabled footfall-agent service.
#
#   bash /boot/firmware/footfall/footfall-firstboot.sh            # on the device, as root
#   bash footfall-firstboot.sh --root /mnt/image --no-pip         # into a mounted image tree
#
# Run by the image's first-boot hook (Raspberry Pi Imager's firstrun.sh, or
# cloud-init's runcmd); `footfall provision sd-card` adds that hook. Safe to
# run again: it changes only what differs from the bundle, and a second run
# with nothing new changes nothing.
#
# What it does, all below --root (default /):
#   user       footfall (systemd-sysusers), member of video for the camera
#   /etc/footfall/agent.yaml, fleet-ca.crt, mqtt-client.crt          0644 root
#   /etc/footfall/credentials/device.key, mqtt-client.key            0600 root (dir 0700)
#   /var/lib/footfall/pseudonym.key                                   0600 footfall (dir 0700)
#   /etc/systemd/system/footfall-agent.service, enabled
#   /opt/footfall/venv with the footfall package (unless --no-pip)
# Secrets leave the boot partition: FAT has no permissions, so anyone who can
# read the card could read them there. The key group's pseudonym.key is never
# overwritten on the device once there: the agent ratchets it forward and an
# older copy would undo forward secrecy.
set -euo pipefail

ROOT="${ROOT:-}"
PIP=1
BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="$2"; shift 2 ;;
        --root=*) ROOT="${1#*=}"; shift ;;
        --no-pip) PIP=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "footfall-firstboot: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
ROOT="${ROOT%/}"

log() { echo "footfall-firstboot: $*"; }
fail() { echo "footfall-firstboot: $* " >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (sudo bash $0)"
[ -f "$BUNDLE/agent.yaml" ] || fail "$BUNDLE/agent.yaml is missing: this is not a footfall provisioning bundle"

# ensure_dir PATH MODE UID GID
ensure_dir() {
    local path="$1" mode="$2" uid="$3" gid="$4"
    if [ ! -d "$path" ]; then
        mkdir -p "$path"
        log "created $path"
    fi
    ensure_owner_mode "$path" "$mode" "$uid" "$gid"
}

ensure_owner_mode() {
    local path="$1" mode="$2" uid="$3" gid="$4"
    [ "$(stat -c %u:%g "$path")" = "$uid:$gid" ] || { chown "$uid:$gid" "$path"; log "owner of $path set to $uid:$gid"; }
    [ "$(stat -c %a "$path")" = "${mode#0}" ] || { chmod "$mode" "$path"; log "mode of $path set to $mode"; }
}

# put SRC DEST MODE UID GID: copy when the content differs; fix owner and mode either way.
put() {
    local src="$1" dest="$2" mode="$3" uid="$4" gid="$5"
    if [ ! -f "$dest" ] || ! cmp -s "$src" "$dest"; then
        # Created with the final owner and mode before any byte is written.
        install -m "$mode" -o "$uid" -g "$gid" -T "$src" "$dest.new"
        mv -f "$dest.new" "$dest"
        log "installed $dest"
    fi
    ensure_owner_mode "$dest" "$mode" "$uid" "$gid"
}

# move_secret NAME DEST UID GID [keep]: install a secret from the bundle, then delete it from the boot partition.
move_secret() {
    local name="$1" dest="$2" uid="$3" gid="$4" keep="${5:-}"
    local src="$BUNDLE/secrets/$name"
    if [ -f "$src" ]; then
        if [ -n "$keep" ] && [ -f "$dest" ]; then
            log "kept $dest (the agent's own state); delete it first to take the bundle's"
            ensure_owner_mode "$dest" 600 "$uid" "$gid"
        else
            put "$src" "$dest" 600 "$uid" "$gid"
        fi
        rm -f "$src"
        log "removed $name from the boot partition"
    elif [ -f "$dest" ]; then
        ensure_owner_mode "$dest" 600 "$uid" "$gid"
    else
        fail "$name is neither in $BUNDLE/secrets nor at $dest: provision the device again"
    fi
}

# -- the service user -----------------------------------------------------------
mkdir -p "$ROOT/etc/sysusers.d"
put "$BUNDLE/footfall.sysusers" "$ROOT/etc/sysusers.d/footfall.conf" 644 0 0
systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/etc/sysusers.d/footfall.conf" >/dev/null
AGENT_UID="$(awk -F: '$1 == "footfall" {print $3}' "$ROOT/etc/passwd")"
AGENT_GID="$(awk -F: '$1 == "footfall" {print $4}' "$ROOT/etc/passwd")"
[ -n "$AGENT_UID" ] || fail "systemd-sysusers did not create the footfall user in $ROOT/etc/passwd"

# -- configuration and secrets ----------------------------------------------------
ensure_dir "$ROOT/etc/footfall" 755 0 0
ensure_dir "$ROOT/etc/footfall/credentials" 700 0 0
ensure_dir "$ROOT/var/lib/footfall" 700 "$AGENT_UID" "$AGENT_GID"
for file in agent.yaml fleet-ca.crt mqtt-client.crt; do
    put "$BUNDLE/$file" "$ROOT/etc/footfall/$file" 644 0 0
done
move_secret device.key "$ROOT/etc/footfall/credentials/device.key" 0 0
move_secret mqtt-client.key "$ROOT/etc/footfall/credentials/mqtt-client.key" 0 0
move_secret pseudonym.key "$ROOT/var/lib/footfall/pseudonym.key" "$AGENT_UID" "$AGENT_GID" keep
if [ -d "$BUNDLE/secrets" ] && [ -z "$(ls -A "$BUNDLE/secrets")" ]; then
    rmdir "$BUNDLE/secrets"
fi
sync

# -- the program -----------------------------------------------------------------------
ensure_dir "$ROOT/opt/footfall" 755 0 0
VENV="$ROOT/opt/footfall/venv"
if [ -z "$ROOT" ]; then
    need=()
    python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
    command -v iw >/dev/null 2>&1 || need+=(iw)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    if [ "$PIP" = 1 ]; then python3 -m venv "$VENV"; else python3 -m venv --without-pip "$VENV"; fi
    log "created $VENV"
fi
if [ "$PIP" = 1 ]; then
    SPEC="$(cat "$BUNDLE/package.txt")"
    STAMP="$ROOT/opt/footfall/installed.txt"
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$SPEC" ]; then
        if [ -d "$BUNDLE/wheels" ]; then
            "$VENV/bin/pip" install --quiet --no-index --find-links "$BUNDLE/wheels" "$SPEC"
        else
            "$VENV/bin/pip" install --quiet "$SPEC"
        fi
        echo "$SPEC" > "$STAMP"
        log "installed $SPEC into $VENV"
    fi
fi

# -- the service -------------------------------------------------------------------------
ensure_dir "$ROOT/etc/systemd/system" 755 0 0
put "$BUNDLE/footfall-agent.service" "$ROOT/etc/systemd/system/footfall-agent.service" 644 0 0
if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" --quiet enable footfall-agent.service
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl --quiet enable footfall-agent.service
    systemctl --no-block start footfall-agent.service
else
    systemctl --quiet enable footfall-agent.service  # early first boot: starts on the next boot
fi
log "done: footfall-agent is enabled; check it with: footfall-agent doctor"
