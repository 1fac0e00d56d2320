# shellcheck shell=sh
# akvsync .rpm %pre ($1: 1 install, 2 upgrade): the account exists before the files, so
# that the settings' group is `akvsync` from the start.
#AKVSYNC_FUNCTIONS#

akvsync_create_account
