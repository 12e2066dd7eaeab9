#!/usr/bin/env bash
# Builds the local Kubernetes control plane used by the e2e tests and the demo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm,
# plus kubelet and the pod sandbox's pause program for the real test node,
# compiled from the Go modules pinned in this folder, so that no Docker engine and
# no release download is needed.
#
# Output: <repo>/.cache/k8s/<kubernetes version>/ (flat, like envtest assets).
# A stamp of the versions and of the module/script hashes makes a rebuild a no-op.
# If KUBEBUILDER_ASSETS already holds every binary, nothing is built.
set -euo pipefail

# Names the cache folder, which KUBERNETES_VERSION in tests/support/controlplane.py looks for.
KUBERNETES_VERSION=v1.34.4
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm kubelet pause)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module_version() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }
repo_root="$(cd "$here/../.." && pwd)"
dest="$repo_root/.cache/k8s/$KUBERNETES_VERSION"
stamp_file="$dest/.stamp"

holds_all_binaries() {
  local dir="$1" name
  for name in "${BINARIES[@]}"; do
    [[ -x "$dir/$name" ]] || return 1
  done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if holds_all_binaries "$KUBEBUILDER_ASSETS"; then
    echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS holds every binary; nothing to build."
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks some of: ${BINARIES[*]}; building into $dest."
fi

if command -v sha256sum >/dev/null; then
  hash_files=(sha256sum)
else
  hash_files=(shasum -a 256) # macOS
fi

if [[ "$(module_version . k8s.io/kubernetes)" != "$KUBERNETES_VERSION" ]]; then
  echo "build.sh: go.mod requires k8s.io/kubernetes $(module_version . k8s.io/kubernetes), not $KUBERNETES_VERSION" >&2
  exit 1
fi
ETCD_VERSION="$(module_version etcd go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(module_version helm helm.sh/helm/v3)"

stamp() {
  echo "kubernetes=$KUBERNETES_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION"
  echo "go=$(go env GOVERSION) goos=$(go env GOOS) goarch=$(go env GOARCH)"
  (cd "$here" && "${hash_files[@]}" go.mod go.sum etcd/go.mod etcd/go.sum etcd/main.go \
    helm/go.mod helm/go.sum pause/main.go build.sh)
}

expected_stamp="$(stamp)"
if holds_all_binaries "$dest" && [[ -f "$stamp_file" ]] && [[ "$(cat "$stamp_file")" == "$expected_stamp" ]]; then
  echo "Control plane binaries in $dest are up to date."
  exit 0
fi

mkdir -p "$dest"
rm -f "$stamp_file"

# Static binaries, as upstream ships its server components; no C toolchain needed.
export CGO_ENABLED=0

IFS=. read -r major minor _ <<<"${KUBERNETES_VERSION#v}"
k8s_version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
  k8s_version_ldflags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

# build <name> <module dir> <package> <ldflags>
build() {
  local name="$1" module_dir="$2" package="$3" ldflags="$4"
  local started=$SECONDS
  echo "==> building $name ($package)"
  if ! (cd "$module_dir" && go build -trimpath -ldflags "$ldflags -s -w" -o "$dest/$name.partial" "$package"); then
    echo "build.sh: building $name failed (module $module_dir, package $package)" >&2
    rm -f "$dest/$name.partial"
    exit 1
  fi
  mv -f "$dest/$name.partial" "$dest/$name"
  echo "    $name built in $((SECONDS - started))s"
}

build etcd "$here/etcd" . ""
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_version_ldflags"
build kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_version_ldflags"
build kube-scheduler "$here" k8s.io/kubernetes/cmd/kube-scheduler "$k8s_version_ldflags"
build kubectl "$here" k8s.io/kubernetes/cmd/kubectl "$k8s_version_ldflags"
build kubelet "$here" k8s.io/kubernetes/cmd/kubelet "$k8s_version_ldflags"
build pause "$here" ./pause ""
build helm "$here/helm" helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

echo "$expected_stamp" > "$stamp_file"
echo "Control plane binaries ready in $dest (${SECONDS}s)."
