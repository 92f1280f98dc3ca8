#!/bin/sh
# The Space's entrypoint: restore the agent's state if it is missing, run the agent (the arguments:
# the Dockerfile's CMD), back up every 5 minutes and soon after bursts of change, and once more when
# the Space stops. Configuration comes from the Space's variables and secrets (see README.md);
# without a durable repository or a password, `run` says so in the logs and `status` is unhealthy.
set -eu
exec openclaw-backup run -- "$@"
