// Package kubernetes checks sgload's Kubernetes manifests with the API's own
// Go types. It is a module of its own so that sgload's binary never links
// k8s.io/api: only this test does.
package kubernetes

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// decode reads every document of sgload.yaml strictly: an unknown or
// duplicated field, a wrong type or an unknown kind fails.
func decode(t *testing.T) (svc *corev1.Service, sts *appsv1.StatefulSet) {
	t.Helper()
	raw, err := os.ReadFile("sgload.yaml")
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	codecs := serializer.NewCodecFactory(scheme, serializer.EnableStrict)
	r := utilyaml.NewYAMLReader(bufioReader(raw))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", firstLine(doc), err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			svc = o
		case *appsv1.StatefulSet:
			sts = o
		default:
			t.Fatalf("unexpected %v", gvk)
		}
	}
	if svc == nil || sts == nil {
		t.Fatalf("want a Service and a StatefulSet, got %v and %v", svc, sts)
	}
	return svc, sts
}

func TestManifests(t *testing.T) {
	svc, sts := decode(t)
	pod := sts.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if strings.Join(c.Args, " ") != "run" {
		t.Errorf("the container runs %q, want sgload run", c.Args)
	}

	// The spool is a claim from the StatefulSet's template, mounted where
	// SGLOAD_SPOOL points.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volume claim template")
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name == claim.Name && m.MountPath == env["SGLOAD_SPOOL"].Value {
			mounted = true
		}
	}
	if !mounted || claim.Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("the spool claim %q is not mounted at SGLOAD_SPOOL %q", claim.Name, env["SGLOAD_SPOOL"].Value)
	}

	// Secrets by reference only: no literal value for anything secret.
	for _, name := range []string{"SGLOAD_SIGNING_KEYS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		e, ok := env[name]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s must come from a Secret by reference: %+v", name, e)
		}
	}
	for _, e := range c.Env {
		if e.Value != "" && (strings.Contains(e.Name, "KEY") || strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "TOKEN")) {
			t.Errorf("%s has a literal value", e.Name)
		}
	}

	// Non-root, as the image is built (user 65532), nothing to escalate.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.FSGroup == nil {
		t.Errorf("pod security context %+v", psc)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container security context %+v", sc)
	}

	// Probes on serve's endpoints, on the port the Service targets.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v", p)
	}
	port := svc.Spec.Ports[0].TargetPort
	found := false
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			found = p.ContainerPort == 8080 && strings.HasSuffix(env["SGLOAD_ADDR"].Value, ":8080")
		}
	}
	if !found {
		t.Errorf("the Service targets %v, which is not sgload's listen port", port)
	}

	// The Service and the StatefulSet select the pods the template makes.
	for k, v := range svc.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pods", k, v)
		}
	}
	for k, v := range sts.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("StatefulSet selector %s=%s does not match the pods", k, v)
		}
	}
	if sts.Spec.ServiceName != svc.Name {
		t.Errorf("serviceName %q, Service %q", sts.Spec.ServiceName, svc.Name)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 35 {
		t.Errorf("grace period %v: serve needs its 30 s shutdown timeout and more", g)
	}
}

// A field the API does not have is an error, not ignored.
func TestDecodeIsStrict(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = appsv1.AddToScheme(scheme)
	codecs := serializer.NewCodecFactory(scheme, serializer.EnableStrict)
	doc := []byte("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replica: 1}\n")
	if _, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil); err == nil {
		t.Fatal("a misspelled field (replica) decoded without error")
	}
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
