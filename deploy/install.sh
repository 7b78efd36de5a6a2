#!/usr/bin/env bash
# Install, upgrade or remove Seglake as a systemd appliance, in one command.
#
#   deploy/install.sh [install] [--dry-run] [--root DIR] [--source DIR] [--no-start]
#   deploy/install.sh uninstall [--purge] [--dry-run] [--root DIR]
#
# install (run as root) creates the system user and group `seglake`,
#   /var/lib/seglake (0700, the data dir), /etc/seglake/seglake.env (settings)
#   and /etc/seglake/secrets.env (0600, root only: systemd hands it to the
#   service as a credential) with a generated admin key pair, printed once;
#   installs the package from --source (default: this checkout) into its own
#   virtual environment /opt/seglake/venv; writes the unit
#   /etc/systemd/system/seglake.service; and, where systemd is running,
#   enables and (re)starts it. Re-running it upgrades in place: the venv is
#   reinstalled, the unit rewritten, data and secrets are kept.
# uninstall stops and removes the service, the unit and the venv; the data dir,
#   the settings and the secrets stay unless --purge (which also removes the
#   user).
# --dry-run prints every step and changes nothing.
# --root DIR works on DIR as the file system root (a staging tree, as an
#   image build uses): users go into DIR/etc/passwd, systemd is not touched.
set -euo pipefail
# The venv, the unit and /etc/seglake must be readable by the service user and
# systemd whatever umask the admin (or a Seglake process, which runs with 077)
# calls this with; private files get their modes explicitly below.
umask 022

ACTION=install
DRY_RUN=0
ROOT=""
PURGE=0
START=1
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The venv links to its base interpreter, which the service user must be able
# to run: the system's, not one under a home directory.
PYTHON="${PYTHON:-/usr/bin/python3}"

PREFIX=/opt/seglake
CONF_DIR=/etc/seglake
DATA_DIR=/var/lib/seglake
UNIT_PATH=/etc/systemd/system/seglake.service
USER_NAME=seglake

usage() {
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        install|uninstall) ACTION="$1" ;;
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        --source) SOURCE="${2:?--source needs a directory}"; shift ;;
        --purge) PURGE=1 ;;
        --no-start) START=0 ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
    shift
done
ROOT="${ROOT%/}"
if [ -n "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ ! -d "$ROOT" ]; then
    echo "install.sh: --root $ROOT is not a directory" >&2
    exit 2
fi
if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or with --dry-run to see the steps)" >&2
    exit 1
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: $PYTHON is not Python 3.11 or later (set PYTHON=/path/to/python3)" >&2
    exit 1
fi

step() {  # print a step; run it unless this is a dry run
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

note() { printf '# %s\n' "$*"; }

systemd_live() {
    [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

user_opts=()
if [ -n "$ROOT" ]; then
    # useradd/groupadd edit the staging tree's account files, not the host's.
    user_opts=(--prefix "$ROOT")
fi

id_of() {  # uid or gid of the seglake account, as the target root knows it
    local db="$ROOT/etc/passwd"
    if [ "$1" = group ]; then
        db="$ROOT/etc/group"
    fi
    awk -F: -v n="$USER_NAME" '$1 == n { print $3; exit }' "$db" 2>/dev/null
}

ensure_account_files() {  # a fresh staging tree has none yet
    local f mode
    for f in passwd group shadow gshadow; do
        mode=0644
        case "$f" in shadow|gshadow) mode=0600 ;; esac
        if [ ! -e "$ROOT/etc/$f" ]; then
            step install -D -m "$mode" /dev/null "$ROOT/etc/$f"
        fi
    done
}

create_account() {
    if [ -n "$ROOT" ]; then
        ensure_account_files
    fi
    if grep -q "^$USER_NAME:" "$ROOT/etc/group" 2>/dev/null; then
        note "group $USER_NAME exists"
    else
        step groupadd "${user_opts[@]}" --system "$USER_NAME"
    fi
    if grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
        note "user $USER_NAME exists"
    else
        step useradd "${user_opts[@]}" --system --gid "$USER_NAME" --home-dir "$DATA_DIR" \
            --no-create-home --shell /usr/sbin/nologin --comment "Seglake object store" "$USER_NAME"
    fi
}

generate_secrets() {  # a key pair in the shape AWS uses; printed once by the caller
    "$PYTHON" - <<'PY'
import secrets, string
upper = string.ascii_uppercase + string.digits
print("SEGLAKE_ACCESS_KEY=" + "SL" + "".join(secrets.choice(upper) for _ in range(18)))
print("SEGLAKE_SECRET_KEY=" + secrets.token_urlsafe(30)[:40])
PY
}

write_file() {  # write_file MODE PATH (content on stdin)
    local mode="$1" path="$2" tmp
    printf '+ write %s (mode %s)\n' "$path" "$mode"
    if [ "$DRY_RUN" -eq 1 ]; then
        cat >/dev/null
        return
    fi
    tmp="$(mktemp "$(dirname "$path")/.install.XXXXXX")"
    chmod "$mode" "$tmp"
    cat >"$tmp"
    mv -f "$tmp" "$path"
}

listen_port() {  # the port SEGLAKE_ADDR in seglake.env names (default 9000)
    local addr
    addr="$(sed -n 's/^[[:space:]]*SEGLAKE_ADDR=//p' "$ROOT$CONF_DIR/seglake.env" 2>/dev/null | tail -n 1)"
    addr="${addr%\"}"; addr="${addr#\"}"
    printf '%s\n' "${addr##*:}" | grep -E '^[0-9]+$' || echo 9000
}

write_bind_dropin() {
    # The unit has no capabilities. A port below 1024 needs exactly one, and
    # the host's user namespace to bind in; the drop-in grants that and no
    # more, and goes away when the port moves back up.
    local dropin="$ROOT$UNIT_PATH.d/10-privileged-port.conf" port
    port="$(listen_port)"
    if [ "$port" -lt 1024 ]; then
        step install -d -m 0755 "$ROOT$UNIT_PATH.d"
        printf '%s\n' "# Written by deploy/install.sh: SEGLAKE_ADDR listens on port $port." \
            "[Service]" "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" \
            "AmbientCapabilities=CAP_NET_BIND_SERVICE" "PrivateUsers=no" |
            write_file 0644 "$dropin"
    elif [ -e "$dropin" ]; then
        step rm -f "$dropin"
    fi
}

do_install() {
    note "installing Seglake from $SOURCE into ${ROOT:-/}"
    create_account
    local uid gid
    uid="$(id_of user || true)"
    gid="$(id_of group || true)"
    [ -n "$uid" ] || uid="$USER_NAME"   # dry run: the account does not exist yet
    [ -n "$gid" ] || gid="$USER_NAME"

    step install -d -m 0700 -o "$uid" -g "$gid" "$ROOT$DATA_DIR"
    step install -d -m 0755 "$ROOT$CONF_DIR"
    step install -d -m 0755 "$ROOT$PREFIX"

    if [ -e "$ROOT$CONF_DIR/seglake.env" ]; then
        note "$CONF_DIR/seglake.env kept"
    else
        write_file 0644 "$ROOT$CONF_DIR/seglake.env" <<'ENV'
# Seglake settings (not secrets): every server flag has a SEGLAKE_* variable.
# `seglake serve --help` lists them. Restart the service after a change.
SEGLAKE_ADDR=:9000
# SEGLAKE_FRONTENDS=2
# SEGLAKE_PUBLIC_BUCKETS=
# SEGLAKE_TRUSTED_PROXIES=
ENV
    fi

    if [ -e "$ROOT$CONF_DIR/secrets.env" ]; then
        note "$CONF_DIR/secrets.env kept (the admin key pair is unchanged)"
    else
        local pair
        pair="$(generate_secrets)"
        printf '%s\n' "# Seglake's bootstrap admin key pair. Root only; systemd passes it to" \
            "# the service as the credential 'secrets' (LoadCredential)." "$pair" |
            write_file 0600 "$ROOT$CONF_DIR/secrets.env"
        if [ "$DRY_RUN" -eq 0 ]; then
            note "admin key pair (shown once; kept in $CONF_DIR/secrets.env):"
            printf '%s\n' "$pair" | sed 's/^SEGLAKE_/  /'
        fi
    fi

    if [ -x "$ROOT$PREFIX/venv/bin/python" ]; then
        note "upgrading the virtual environment in place"
    else
        step "$PYTHON" -m venv "$ROOT$PREFIX/venv"
    fi
    # pip builds in the source tree it is given: give it a copy of just the
    # package, so the checkout is left as it was (and may be read-only).
    local stage
    stage="$(mktemp -d)"
    step cp -a "$SOURCE/pyproject.toml" "$SOURCE/README.md" "$SOURCE/seglake" "$stage/"
    step "$ROOT$PREFIX/venv/bin/pip" install --quiet --upgrade --no-warn-script-location "$stage"
    rm -rf "$stage"

    step install -D -m 0644 "$SOURCE/deploy/seglake.service" "$ROOT$UNIT_PATH"
    write_bind_dropin

    if systemd_live && [ "$START" -eq 1 ]; then
        step systemctl daemon-reload
        step systemctl enable seglake.service
        step systemctl restart seglake.service
    else
        note "systemd is not managing this root: the unit is installed, not started"
        note "start it with: systemctl daemon-reload && systemctl enable --now seglake"
    fi
    note "done"
}

do_uninstall() {
    if systemd_live; then
        step systemctl disable --now seglake.service || true
    fi
    if [ -e "$ROOT$UNIT_PATH" ] || [ "$DRY_RUN" -eq 1 ]; then
        step rm -rf "$ROOT$UNIT_PATH" "$ROOT$UNIT_PATH.d"
    fi
    if systemd_live; then
        step systemctl daemon-reload
    fi
    step rm -rf "$ROOT$PREFIX"
    if [ "$PURGE" -eq 1 ]; then
        step rm -rf "$ROOT$DATA_DIR" "$ROOT$CONF_DIR"
        if grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null || [ "$DRY_RUN" -eq 1 ]; then
            step userdel "${user_opts[@]}" "$USER_NAME"
        fi
        if grep -q "^$USER_NAME:" "$ROOT/etc/group" 2>/dev/null; then
            step groupdel "${user_opts[@]}" "$USER_NAME"
        fi
    else
        note "kept: $DATA_DIR (data), $CONF_DIR (settings and secrets); --purge removes them"
    fi
    note "done"
}

case "$ACTION" in
    install) do_install ;;
    uninstall) do_uninstall ;;
esac
