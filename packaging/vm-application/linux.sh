#!/bin/sh
# The VM Application commands for Linux (packaging/vm-application/README.md):
#   sh linux.sh install akvsync.deb   install or upgrade, then prepare the service account
#   sh linux.sh remove                remove the package (state purged, certificates kept)
set -eu
case "${1:-}" in
  install)
    package="${2:?usage: linux.sh install PACKAGE.deb}"
    if command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y "./${package#./}"
    else
      dpkg -i "$package"
    fi
    # A settings file written next to the package by the VM Application's configuration.
    if [ -f settings.json ]; then
      install -m 0640 -g akvsync settings.json /etc/akvsync/settings.json
    fi
    akvsync service install --settings /etc/akvsync/settings.json --account akvsync
    if [ -d /run/systemd/system ]; then systemctl restart akvsync.service; fi
    ;;
  remove)
    dpkg --purge akvsync
    ;;
  *)
    echo "usage: linux.sh install PACKAGE.deb | remove" >&2
    exit 2
    ;;
esac
