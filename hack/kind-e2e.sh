#!/usr/bin/env bash
# Runs the e2e suite against a throwaway kind cluster (needs Docker and kind), as a
# cross-check of the local control plane that tests/e2e starts by default.
# Extra arguments go to pytest, e.g.: hack/kind-e2e.sh -k webhook
set -euo pipefail

cluster="vramgate-e2e-$$"
kubeconfig="$(mktemp)"
trap 'kind delete cluster --name "$cluster"; rm -f "$kubeconfig"' EXIT

kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 120s
# kind's API server runs in a container: it reaches webhooks served by the tests on the
# host through the IPv4 gateway of the "kind" Docker network, not through 127.0.0.1.
VRAMGATE_TEST_WEBHOOK_HOST="$(docker network inspect kind \
  --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 -F .)"
export VRAMGATE_TEST_WEBHOOK_HOST
"${PYTHON:-python}" -m pytest tests/e2e --kubeconfig "$kubeconfig" "$@"
