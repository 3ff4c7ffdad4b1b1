#!/bin/sh
# docker-compose.yml's `backup` service: a cron-like loop as the postgres user. Once at start:
# stanza-create (idempotent) and check; then every day at BACKUP_AT (UTC, default 01:30) a
# full backup on BACKUP_FULL_DAY (1-7, Monday=1; default 7, Sunday) and a diff otherwise,
# and a check every hour. A failed run is logged and retried the next time. docs/backup.md.
set -u
STANZA="${PGBACKREST_STANZA:-conveyor}"
AT="${BACKUP_AT:-01:30}"
FULL_DAY="${BACKUP_FULL_DAY:-7}"

until pg_isready -q -h /var/run/postgresql; do sleep 5; done
pgbackrest --stanza="$STANZA" stanza-create && pgbackrest --stanza="$STANZA" check

last_backup_day=""
while true; do
    now="$(date -u +%H:%M)"; today="$(date -u +%F)"
    if [ "$now" \> "$AT" ] || [ "$now" = "$AT" ]; then
        if [ "$last_backup_day" != "$today" ]; then
            kind=diff
            [ "$(date -u +%u)" = "$FULL_DAY" ] && kind=full
            echo "backup-schedule: $kind backup of stanza $STANZA at $(date -u +%FT%TZ)"
            pgbackrest --stanza="$STANZA" --type="$kind" backup && last_backup_day="$today"
        fi
    fi
    [ "$(date -u +%M)" = "15" ] && pgbackrest --stanza="$STANZA" check
    sleep 60
done
