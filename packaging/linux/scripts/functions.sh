# shellcheck shell=sh
# Shared by the .deb and .rpm maintainer scripts: `cargo xtask dist` puts this file in place
# of their marker line (crates/xtask/src/linux_layout.rs). POSIX sh; works without systemd
# (containers, image builds): only akvsync_systemd_running decides whether to talk to it.

akvsync_warn() {
  echo "akvsync: warning: $*" >&2
}

akvsync_systemd_running() {
  [ -d /run/systemd/system ]
}

# The system account the service runs as: group and user `akvsync`, home the state
# directory, no login shell. An existing account is kept as it is.
akvsync_create_account() {
  akvsync_shell=/usr/sbin/nologin
  [ -x "$akvsync_shell" ] || akvsync_shell=/sbin/nologin
  [ -x "$akvsync_shell" ] || akvsync_shell=/bin/false
  if ! getent group akvsync >/dev/null; then
    if command -v groupadd >/dev/null 2>&1; then
      groupadd --system akvsync
    else
      addgroup --system akvsync
    fi
  fi
  if ! getent passwd akvsync >/dev/null; then
    if command -v useradd >/dev/null 2>&1; then
      useradd --system --gid akvsync --home-dir /var/lib/akvsync --no-create-home \
        --shell "$akvsync_shell" --comment "akvsync certificate agent" akvsync
    else
      adduser --system --ingroup akvsync --home /var/lib/akvsync --no-create-home \
        --shell "$akvsync_shell" akvsync
    fi
  fi
}

# The state directory belongs to the account (0700); the settings are root's, readable by
# the account's group (0640). Symbolic links are left alone.
akvsync_fix_permissions() {
  if [ ! -L /var/lib/akvsync ]; then
    mkdir -p /var/lib/akvsync
    chown akvsync:akvsync /var/lib/akvsync
    chmod 0700 /var/lib/akvsync
  fi
  if [ -f /etc/akvsync/settings.json ] && [ ! -L /etc/akvsync/settings.json ]; then
    chown root:akvsync /etc/akvsync/settings.json
    chmod 0640 /etc/akvsync/settings.json
  fi
  if [ -f /etc/systemd/system/akvsync.service ] && [ ! -L /etc/systemd/system/akvsync.service ]; then
    akvsync_warn "/etc/systemd/system/akvsync.service (the Azure VM extension's unit?) overrides this package's unit"
  fi
}

# `akvsync service install`: validates the settings, creates the directories they write
# (owned by the account), the unit's drop-in and the polkit rule for hook units. A failure
# leaves the package installed, with a warning saying what to run once it is fixed.
akvsync_service_install() {
  if ! /usr/bin/akvsync service install --settings /etc/akvsync/settings.json --account akvsync; then
    akvsync_warn "'akvsync service install' failed; after fixing /etc/akvsync/settings.json run:"
    akvsync_warn "  akvsync service install --settings /etc/akvsync/settings.json --account akvsync"
  fi
}

# True when the installed binary accepts the settings (a restart on settings it refuses
# would stop a service that keeps running on its last good ones).
akvsync_settings_valid() {
  if ! akvsync_report="$(/usr/bin/akvsync validate /etc/akvsync/settings.json 2>&1)"; then
    echo "$akvsync_report" >&2
    akvsync_warn "/etc/akvsync/settings.json is invalid: akvsync.service not restarted"
    return 1
  fi
}

# What the package and `akvsync service install` created, except the installed
# certificates (the stores stay, as with the Microsoft extension's uninstall) and the
# account (left in place, as Debian policy recommends for system users).
akvsync_purge() {
  rm -rf /var/lib/akvsync
  rm -f /etc/systemd/system/akvsync.service.d/50-akvsync-settings.conf
  rmdir /etc/systemd/system/akvsync.service.d 2>/dev/null || true
  rm -f /etc/polkit-1/rules.d/50-akvsync.rules
  rmdir /etc/akvsync 2>/dev/null || true
}
