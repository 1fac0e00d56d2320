#!/usr/bin/env bash
# The .deb and .rpm of `cargo xtask dist`, checked for real (issue 17):
#   .deb: dpkg -i on this machine, what it installed (files, modes, the account, the state
#         directory, the unit under systemd-analyze, the agent from PATH as its account), an
#         edit of the settings, an upgrade to the same files at a higher version (built by
#         `cargo xtask dist --only deb --package-version`) that keeps the edit, dpkg --remove
#         and a reinstall (settings kept, enabled again), then dpkg --purge: nothing of the
#         package left but the account, the certificate store kept;
#   .rpm: header, file list, modes, %config(noreplace), scriptlets (sh -n), the files
#         installed into a scratch root (--noscripts: the scriptlets need a real system with
#         useradd and the account, which an empty root does not have), then rpm -i on this
#         machine with the scriptlets (--nodeps), an edit, rpm -U, rpm -e.
# Needs root (or sudo) on a throwaway Debian/Ubuntu machine; systemd need not run. The
# account `akvsync` stays after the .deb's purge (Debian policy), then is removed again if
# this check created it. Usage: scripts/packages-check.sh DIST
set -euo pipefail
dist="$(realpath "${1:?usage: scripts/packages-check.sh DIST_DIR}")"
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

STORE=/var/lib/waagent/Microsoft.Azure.KeyVault.Store
DROPIN=/etc/systemd/system/akvsync.service.d/50-akvsync-settings.conf
POLKIT_RULE=/etc/polkit-1/rules.d/50-akvsync.rules

fail() { echo "packages-check: FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }
section() { echo "--- $*"; }

only_file() { # the one file matching a glob
  local matches
  mapfile -t matches < <(compgen -G "$1" || true)
  [ "${#matches[@]}" -eq 1 ] || fail "expected one $1, found ${#matches[@]}: ${matches[*]}"
  echo "${matches[0]}"
}

expect_stat() { # path "mode user:group"
  local got
  got="$($SUDO stat -c '%a %U:%G' "$1" 2>/dev/null)" || fail "$1 is missing"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
  ok "$1 $2"
}

deb="$(only_file "$dist/akvsync_*_amd64.deb")"
rpm="$(only_file "$dist/akvsync-*.x86_64.rpm")"
work="$(mktemp -d)"
created=() # what this script made outside $work, removed at exit (deepest first)
cleanup() {
  local i
  if dpkg-query -W -f='${db:Status-Abbrev}' akvsync 2>/dev/null | grep -q '^[ir]'; then
    echo "packages-check: purging akvsync after a failure"
    $SUDO dpkg --purge akvsync >/dev/null 2>&1 || true
  fi
  if rpm -q akvsync >/dev/null 2>&1; then
    echo "packages-check: erasing the akvsync rpm after a failure"
    $SUDO rpm -e akvsync >/dev/null 2>&1 || true
  fi
  for ((i = ${#created[@]} - 1; i >= 0; i--)); do
    $SUDO rm -f "${created[i]}" 2>/dev/null || $SUDO rmdir "${created[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Makes a directory (and the parents that are missing), recording what it created.
make_dir() {
  local dir="$1" missing=()
  while [ ! -e "$dir" ]; do missing=("$dir" "${missing[@]}"); dir="$(dirname "$dir")"; done
  for dir in "${missing[@]}"; do $SUDO mkdir "$dir"; created+=("$dir"); done
}

section "packages"
ls -l "$deb" "$rpm"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
rpm -qplv "$rpm"

account_existed=no
if getent passwd akvsync >/dev/null; then account_existed=yes; fi
if rpm -q akvsync >/dev/null 2>&1; then fail "akvsync is installed here by rpm; this check erases it"; fi
if dpkg-query -W -f='${db:Status-Abbrev}' akvsync 2>/dev/null | grep -q '^[ir]'; then
  fail "akvsync is already installed here; this check installs and purges it (use a throwaway machine)"
fi
for path in /etc/akvsync /var/lib/akvsync; do
  [ ! -e "$path" ] || fail "$path exists already; this check would remove it"
done

section "the upgrade packages (same files, higher version)"
version="$(dpkg-deb --field "$deb" Version)"
upgrade_version="${version}+ci1"
cargo xtask dist --only deb,rpm --package-version "$upgrade_version" >"$work/xtask.log" ||
  { cat "$work/xtask.log"; fail "cargo xtask dist --only deb,rpm"; }
mv "dist/akvsync_${upgrade_version}_amd64.deb" "dist/akvsync-${upgrade_version}-1.x86_64.rpm" "$work/"
upgrade="$work/akvsync_${upgrade_version}_amd64.deb"
rpm_upgrade="$work/akvsync-${upgrade_version}-1.x86_64.rpm"
dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}' >"$work/contents.1"
dpkg-deb --contents "$upgrade" | awk '{print $1, $2, $6}' >"$work/contents.2"
diff "$work/contents.1" "$work/contents.2" || fail "the upgrade package has other files or modes"
ok "same files and modes as $deb"
[ "$(dpkg-deb --info "$deb" md5sums | grep ' usr/bin/akvsync$')" = \
  "$(dpkg-deb --info "$upgrade" md5sums | grep ' usr/bin/akvsync$')" ] || fail "another binary"
ok "same binary; version $version -> $upgrade_version"
dpkg --compare-versions "$upgrade_version" gt "$version" || fail "$upgrade_version is not higher"

section ".deb: install $version"
$SUDO dpkg -i "$deb"
status="$(dpkg-query -W -f='${Status} ${Version}' akvsync)"
[ "$status" = "install ok installed $version" ] || fail "dpkg says: $status"
ok "$status"
dpkg -L akvsync >"$work/files"
while read -r path; do
  [ -e "$path" ] || fail "$path (dpkg -L) is missing"
done <"$work/files"
ok "every path of dpkg -L exists ($(wc -l <"$work/files"))"
unit=/lib/systemd/system/akvsync.service
expect_stat /usr/bin/akvsync "755 root:root"
expect_stat "$unit" "644 root:root"
expect_stat /etc/akvsync "755 root:root"
expect_stat /etc/akvsync/settings.json "640 root:akvsync"
expect_stat /var/lib/akvsync "700 akvsync:akvsync"
dpkg-query -W -f='${Conffiles}\n' akvsync | grep -q '^ /etc/akvsync/settings.json ' ||
  fail "the settings are not a conffile"
ok "/etc/akvsync/settings.json is a conffile"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd akvsync) || fail "no account akvsync"
if [ "$uid" -ge 1000 ] || [ "$home" != /var/lib/akvsync ] || [ "${shell##*/}" != nologin ]; then
  fail "account akvsync: uid $uid, home $home, shell $shell"
fi
getent group akvsync >/dev/null || fail "no group akvsync"
ok "system account akvsync (uid $uid, home $home, shell $shell)"
[ "$(command -v akvsync)" = /usr/bin/akvsync ] || fail "akvsync on PATH is $(command -v akvsync)"
ok "on PATH: $(akvsync --version)"
akvsync validate /etc/akvsync/settings.json
ok "akvsync validate /etc/akvsync/settings.json"
# postinst ran `akvsync service install`: the drop-in runs the unit as the account with no
# capability (the example settings need none) and the whole unit verifies with it.
expect_stat "$DROPIN" "644 root:root"
grep -qx 'User=akvsync' "$DROPIN" || fail "the drop-in does not name the account: $(cat "$DROPIN")"
grep -qx 'AmbientCapabilities=' "$DROPIN" && ! grep -q 'CAP_' "$DROPIN" ||
  fail "the drop-in grants a capability the example settings do not need: $(cat "$DROPIN")"
ok "drop-in written by akvsync service install: User=akvsync, no capability"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify akvsync.service || fail "systemd-analyze verify akvsync.service (with its drop-in)"
  ok "systemd-analyze verify akvsync.service (unit + drop-in)"
fi
# The unit's command, as its account: the settings are readable, the state directory writable.
$SUDO runuser -u akvsync -- /usr/bin/akvsync once --settings /etc/akvsync/settings.json \
  --state-dir /var/lib/akvsync
$SUDO test -s /var/lib/akvsync/state.json || fail "no state written by the account"
ok "akvsync once as akvsync wrote /var/lib/akvsync/state.json"
if command -v systemd-analyze >/dev/null; then
  $SUDO systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
  ok "systemd-analyze verify $unit"
else
  echo "  (no systemd-analyze: unit not verified)"
fi
[ -L /etc/systemd/system/multi-user.target.wants/akvsync.service ] || fail "not enabled"
ok "enabled (multi-user.target.wants), offline"
$SUDO dpkg --verify akvsync || fail "dpkg --verify"
ok "dpkg --verify: no file differs from the package"
gzip -t /usr/share/man/man1/akvsync.1.gz && ok "man page"

section ".deb: edit the settings, upgrade to $upgrade_version"
$SUDO sed -i 's/"3600"/"7200"/' /etc/akvsync/settings.json
grep -q '"7200"' /etc/akvsync/settings.json || fail "the edit did not happen"
$SUDO dpkg -i "$upgrade"
status="$(dpkg-query -W -f='${Status} ${Version}' akvsync)"
[ "$status" = "install ok installed $upgrade_version" ] || fail "dpkg says: $status"
ok "$status"
grep -q '"7200"' /etc/akvsync/settings.json || fail "the upgrade lost the edited settings"
if compgen -G '/etc/akvsync/settings.json.dpkg-*' >/dev/null; then fail "dpkg left $(echo /etc/akvsync/settings.json.dpkg-*)"; fi
ok "the edited settings survived (no .dpkg-dist/.dpkg-old)"
expect_stat /etc/akvsync/settings.json "640 root:akvsync"
expect_stat /var/lib/akvsync "700 akvsync:akvsync"
$SUDO test -s /var/lib/akvsync/state.json || fail "the upgrade lost the state"
ok "the state survived"
verify="$($SUDO dpkg --verify akvsync || true)"
[ "$(echo "$verify" | awk '{print $NF}')" = /etc/akvsync/settings.json ] ||
  fail "dpkg --verify after the edit: $verify"
ok "dpkg --verify: only the edited conffile differs"

section ".deb: remove, then install again"
$SUDO dpkg --remove akvsync
status="$(dpkg-query -W -f='${Status}' akvsync)"
[ "$status" = "deinstall ok config-files" ] || fail "after dpkg --remove: $status"
if [ -e /usr/bin/akvsync ] || [ -e "$unit" ]; then fail "dpkg --remove left the program or unit"; fi
grep -q '"7200"' /etc/akvsync/settings.json || fail "dpkg --remove lost the settings"
$SUDO test -s /var/lib/akvsync/state.json || fail "dpkg --remove lost the state"
[ "$(readlink /etc/systemd/system/akvsync.service)" = /dev/null ] || fail "not masked"
ok "removed: program and unit gone, unit masked, settings and state kept"
$SUDO dpkg -i "$upgrade" 2>&1 | tee "$work/reinstall.log"
if grep -q 'overrides this package' "$work/reinstall.log"; then fail "a mask taken for another unit"; fi
[ ! -e /etc/systemd/system/akvsync.service ] || fail "still masked"
[ -L /etc/systemd/system/multi-user.target.wants/akvsync.service ] || fail "not enabled again"
grep -q '"7200"' /etc/akvsync/settings.json || fail "the reinstall lost the settings"
ok "installed again: unmasked, enabled, edited settings kept"

section ".deb: purge"
make_dir "$STORE"
echo "certificate" | $SUDO tee "$STORE/x.pem" >/dev/null
created+=("$STORE/x.pem")
# The polkit rule `akvsync service install` writes for hook units (the example settings have
# none): made here so that the purge of it is checked too.
for generated in "$POLKIT_RULE"; do
  if [ ! -e "$generated" ]; then
    make_dir "$(dirname "$generated")"
    echo "# written by packages-check.sh as akvsync service install would" | $SUDO tee "$generated" >/dev/null
    echo "  (made $generated, which akvsync service install did not write)"
  fi
done
dpkg -L akvsync >"$work/files"
$SUDO dpkg --purge akvsync
if dpkg-query -W -f='${db:Status-Abbrev}' akvsync 2>/dev/null | grep -q '^[ir]'; then
  fail "still known to dpkg: $(dpkg-query -W -f='${Status}' akvsync)"
fi
ok "purged"
while read -r path; do
  if [ "$path" = /. ]; then continue; fi
  if [ -d "$path" ] && dpkg -S "$path" >/dev/null 2>&1; then continue; fi # a shared directory
  if [ -e "$path" ] || [ -L "$path" ]; then fail "$path (from dpkg -L) is still there"; fi
done <"$work/files"
ok "no file or own directory of the package remains ($(wc -l <"$work/files") paths)"
for path in /var/lib/akvsync /etc/akvsync "$DROPIN" "$(dirname "$DROPIN")" "$POLKIT_RULE"; do
  [ ! -e "$path" ] || fail "$path is still there"
done
ok "gone: /var/lib/akvsync, /etc/akvsync, the drop-in and its directory, the polkit rule"
leftovers="$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
  /var/lib/systemd/deb-systemd-helper-masked -name '*akvsync*' 2>/dev/null || true)"
[ -z "$leftovers" ] || fail "systemd leftovers: $leftovers"
ok "no enablement or mask left"
$SUDO test -f "$STORE/x.pem" || fail "the purge removed the certificate store"
ok "the certificate store is kept ($STORE/x.pem)"
getent passwd akvsync >/dev/null && echo "  note: the system account akvsync stays (Debian policy)"

section ".rpm: header, files, modes, scriptlets"
rpm -qp --info "$rpm"
[ "$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}' "$rpm")" = \
  "akvsync $version 1 x86_64 MIT OR Apache-2.0" ] || fail "rpm header"
ok "akvsync $version-1 x86_64"
rpm -qp --list "$rpm" | sort >"$work/rpm.list"
{ # the .deb's files, the unit moved to rpm's directory, and the package's own directories
  dpkg-deb --contents "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' |
    sed 's#^/lib/systemd/system/#/usr/lib/systemd/system/#'
  printf '%s\n' /etc/akvsync /usr/share/doc/akvsync
} | sort >"$work/deb.list"
diff "$work/deb.list" "$work/rpm.list" || fail "the rpm's files differ from the deb's"
ok "the same files as the .deb ($(wc -l <"$work/rpm.list") paths, unit in /usr/lib/systemd/system)"
rpm -qp --dump "$rpm" | awk '{print $1, $5, $6, $7, $8}' >"$work/rpm.dump"
cat "$work/rpm.dump"
expect_dump() {
  grep -qxF "$1" "$work/rpm.dump" || fail "rpm --dump has no line: $1"
  ok "$1"
}
expect_dump "/usr/bin/akvsync 0100755 root root 0"
expect_dump "/usr/lib/systemd/system/akvsync.service 0100644 root root 0"
expect_dump "/etc/akvsync/settings.json 0100640 root akvsync 1"
expect_dump "/etc/akvsync 040755 root root 0"
flags="$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | awk '$2 == "/etc/akvsync/settings.json" {print $1}')"
[ "$flags" = cn ] || fail "settings flags $flags, expected cn (%config(noreplace))"
ok "/etc/akvsync/settings.json is %config(noreplace)"
rpm -qp --scripts "$rpm" | awk -v dir="$work" '
  /^[a-z]+ scriptlet \(using \/bin\/sh\):$/ { file = dir "/rpm." $1; print $1 >> (dir "/rpm.scriptlets"); next }
  file { print > file }'
[ "$(tr '\n' ' ' <"$work/rpm.scriptlets")" = "preinstall postinstall preuninstall postuninstall " ] ||
  fail "scriptlets: $(cat "$work/rpm.scriptlets")"
for scriptlet in preinstall postinstall preuninstall postuninstall; do
  sh -n "$work/rpm.$scriptlet" || fail "$scriptlet scriptlet: syntax"
done
grep -q '^akvsync_create_account$' "$work/rpm.preinstall" || fail "%pre does not create the account"
grep -q '^  akvsync_purge$' "$work/rpm.postuninstall" || fail "%postun does not purge"
ok "scriptlets %pre %post %preun %postun (sh -n)"

section ".rpm: files into a scratch root (--noscripts)"
scratch="$work/rpmroot"
mkdir "$scratch"
$SUDO rpm --root "$scratch" --initdb
# The group akvsync does not exist in an empty root: rpm warns and uses root.
$SUDO rpm --root "$scratch" -i --nodeps --noscripts "$rpm" 2>&1 | grep -v 'group akvsync does not exist' || true
$SUDO rpm --root "$scratch" -q akvsync >/dev/null || fail "not installed in $scratch"
expect_stat "$scratch/usr/bin/akvsync" "755 root:root"
expect_stat "$scratch/usr/lib/systemd/system/akvsync.service" "644 root:root"
expect_stat "$scratch/etc/akvsync/settings.json" "640 root:root"
while read -r path; do
  [ -e "$scratch$path" ] || fail "$path is missing in $scratch"
done <"$work/rpm.list"
ok "every file of rpm --list is in $scratch"
"$scratch/usr/bin/akvsync" validate "$scratch/etc/akvsync/settings.json" >/dev/null || fail "validate"
ok "its akvsync validates its settings"
$SUDO rm -rf "$scratch"

section ".rpm: install on this machine with its scriptlets, edit, upgrade, erase"
# --nodeps: Debian's rpm database knows no package providing /bin/sh, getent or useradd.
if [ "$account_existed" = no ]; then
  # The .deb's account, removed so that %pre creates it again.
  $SUDO userdel akvsync
  if getent group akvsync >/dev/null; then $SUDO groupdel akvsync; fi
else
  echo "  (the account akvsync existed before this check: %pre finds it)"
fi
$SUDO rpm -i --nodeps --force-debian "$rpm"
$SUDO rpm -q akvsync >/dev/null || fail "rpm -q akvsync"
getent passwd akvsync >/dev/null || fail "%pre created no account"
ok "installed, account akvsync"
expect_stat /usr/bin/akvsync "755 root:root"
expect_stat /usr/lib/systemd/system/akvsync.service "644 root:root"
expect_stat /etc/akvsync/settings.json "640 root:akvsync"
expect_stat /var/lib/akvsync "700 akvsync:akvsync"
[ -L /etc/systemd/system/multi-user.target.wants/akvsync.service ] || fail "not enabled"
ok "enabled (multi-user.target.wants), offline"
verify="$($SUDO rpm -V --nodeps akvsync || true)"
[ -z "$verify" ] || fail "rpm -V: $verify"
ok "rpm -V: every file, mode and owner as packaged"
$SUDO runuser -u akvsync -- /usr/bin/akvsync once --settings /etc/akvsync/settings.json \
  --state-dir /var/lib/akvsync >/dev/null
$SUDO sed -i 's/"3600"/"7200"/' /etc/akvsync/settings.json
$SUDO rpm -U --nodeps --force-debian "$rpm_upgrade"
[ "$(rpm -q --qf '%{VERSION}' akvsync)" = "$upgrade_version" ] || fail "not upgraded"
grep -q '"7200"' /etc/akvsync/settings.json || fail "the upgrade lost the edited settings"
$SUDO test -s /var/lib/akvsync/state.json || fail "the upgrade lost the state"
ok "upgraded to $upgrade_version: edited settings and state kept"
$SUDO rpm -e akvsync
if rpm -q akvsync >/dev/null 2>&1; then fail "still installed"; fi
while read -r path; do
  case "$path" in /etc/akvsync | /etc/akvsync/settings.json) continue ;; esac
  if [ -e "$path" ]; then fail "$path is still there after rpm -e"; fi
done <"$work/rpm.list"
for path in /var/lib/akvsync /etc/systemd/system/multi-user.target.wants/akvsync.service; do
  if [ -e "$path" ] || [ -L "$path" ]; then fail "$path is still there after rpm -e"; fi
done
[ "$(ls /etc/akvsync)" = settings.json.rpmsave ] || fail "/etc/akvsync holds: $(ls /etc/akvsync)"
ok "erased: files, state and enablement gone; the edited settings kept as settings.json.rpmsave"
$SUDO rm -r /etc/akvsync
if [ "$account_existed" = no ]; then
  $SUDO userdel akvsync
  if getent group akvsync >/dev/null; then $SUDO groupdel akvsync; fi
  ok "the account akvsync removed again (it did not exist before this check)"
fi

section "packages-check: all checks passed"
