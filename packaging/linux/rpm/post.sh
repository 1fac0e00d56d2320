# shellcheck shell=sh
# akvsync .rpm %post ($1: 1 install, 2 upgrade). First installation: enabled (offline too,
# for images) and started. Upgrade: try-restart, so a running service continues on the new
# binary (state in /var/lib/akvsync kept); an administrator's disable or stop is kept.
#AKVSYNC_FUNCTIONS#

akvsync_fix_permissions
akvsync_service_install
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl --no-reload enable akvsync.service >/dev/null 2>&1 ||
    akvsync_warn "enabling akvsync.service failed"
fi
if akvsync_systemd_running; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ "$1" -eq 1 ]; then
    systemctl start akvsync.service ||
      akvsync_warn "starting akvsync.service failed: journalctl -u akvsync.service"
  elif akvsync_settings_valid; then
    systemctl try-restart akvsync.service ||
      akvsync_warn "restarting akvsync.service failed: journalctl -u akvsync.service"
  fi
fi
exit 0
