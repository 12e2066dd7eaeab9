//go:build tools

// Package tools pins the helm command so that go.mod and go.sum record exactly
// what build.sh compiles. It is a module of its own because helm's dependency
// versions differ from those of k8s.io/kubernetes.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
