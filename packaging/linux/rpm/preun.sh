# shellcheck shell=sh
# akvsync .rpm %preun ($1: 0 erase, 1 upgrade): on erase, stop and disable the service.
if [ "$1" -eq 0 ]; then
  if [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now akvsync.service >/dev/null 2>&1 || true
  elif command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable akvsync.service >/dev/null 2>&1 || true
  fi
fi
exit 0
