#!/bin/sh
# Restore if the state is missing, run the agent, back up periodically and at shutdown.
# OPENCLAW_BACKUP_GRACE_SECONDS must match termination_grace_period in README.md.
set -e
exec openclaw-backup run -- openclaw gateway --port 18789 --bind lan
