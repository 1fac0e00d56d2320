# shellcheck shell=sh
# akvsync .rpm %postun ($1: 0 erase, 1 upgrade). Erase is a purge (rpm has no "remove but
# keep the configuration"; an edited settings file stays as settings.json.rpmsave, and with
# it /etc/akvsync): the state and the files `akvsync service install` wrote go; installed
# certificates and the `akvsync` account stay.
#AKVSYNC_FUNCTIONS#

if [ "$1" -eq 0 ]; then
  akvsync_purge
  if akvsync_systemd_running; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
fi
exit 0
