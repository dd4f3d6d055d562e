#!/bin/sh
# Check that every host was deployed recently: the plain-shell CI job.
# Run it from cron or any CI on a schedule. It needs the pinkie binary, the
# hub's URL and a reader key (pinkie keys init makes reader.nk):
#
#   PINKIE_SERVER=tls://hub.example.org:4222 PINKIE_NKEY=/run/secrets/reader.nk \
#     scripts/ci-last-deploy.sh
#
# Optional: PINKIE_WARN_AFTER (default 7d), PINKIE_FAIL_AFTER (default 30d),
# PINKIE_FLAKE (a flake whose nixosConfigurations count as declared hosts,
# so a host never deployed fails the job).
#
# Exit codes are pinkie last-deploy's: 0 all fresh, 1 some host beyond
# the warning age, 3 some host beyond the failure age or never deployed,
# 2 usage or connection error.
set -eu
: "${PINKIE_SERVER:?set PINKIE_SERVER to the hub URL}"
: "${PINKIE_NKEY:?set PINKIE_NKEY to a reader nkey seed file}"
set -- --warn-after "${PINKIE_WARN_AFTER:-7d}" --fail-after "${PINKIE_FAIL_AFTER:-30d}"
if [ -n "${PINKIE_FLAKE:-}" ]; then
  set -- "$@" --flake "$PINKIE_FLAKE"
fi
exec "${PINKIE:-pinkie}" last-deploy "$@"
