#!/bin/sh
# Create the namespace the workers use and register the upgrade's search attributes on it.
# Runs once per `docker compose up` in the temporalio/admin-tools image, after the server is
# healthy and before any worker starts. Safe to run again: what exists is kept (the namespace's
# retention is set to RETENTION again).
#
# The search attributes are declared in workflows/search_attributes.py; keep the two lists equal
# (tests/end_to_end/test_compose.py checks that they are).
set -eu

TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
# Closed upgrades stay readable this long: Azure keeps a scale set's upgrade history for two
# months (`upgradectl history` looks back 60 days).
RETENTION="${NAMESPACE_RETENTION:-1440h}"
SEARCH_ATTRIBUTES="ScaleSet TargetImage UpgradeStatus StartedBy"
export TEMPORAL_ADDRESS

# Run a command until it succeeds, for about two minutes: the server answers health checks
# before it has loaded a new namespace, which can take some seconds more.
retry() {
    attempt=1
    until "$@"; do
        if [ "$attempt" -ge 60 ]; then
            echo "gave up after $attempt attempts: $*" >&2
            return 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
}

namespace_exists() {
    temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1
}

# A namespace created earlier (with a shorter retention) gets this one too.
ensure_namespace() {
    if namespace_exists; then
        temporal operator namespace update --namespace "$NAMESPACE" --retention "$RETENTION"
    else
        temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
    fi
}

# A name already registered as Keyword is left alone; `create` fails for a name registered with
# another type, which is worth stopping for.
keyword_exists() {
    temporal operator search-attribute list --namespace "$NAMESPACE" --output json \
        | grep -Eq "\"$1\": *\"(INDEXED_VALUE_TYPE_KEYWORD|Keyword)\""
}

ensure_keyword() {
    keyword_exists "$1" || temporal operator search-attribute create --namespace "$NAMESPACE" --name "$1" --type Keyword
}

retry temporal operator cluster health >/dev/null
retry ensure_namespace
echo "namespace $NAMESPACE is ready"
for name in $SEARCH_ATTRIBUTES; do
    retry ensure_keyword "$name"
    echo "search attribute $name is a Keyword"
done
