// Package kubernetes holds sgload's Kubernetes manifests (sgload.yaml) and
// their test, which decodes them strictly with the k8s.io/api types.
package kubernetes
