package spool

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sgload/sgload/internal/durable"
)

// Node is the node id of the spool: want when given, else the one serve
// stored in state/node, else one made from the host name (what serve will
// store). Flush and sync name their output with it; only serve stores it
// (SaveNode).
func (d Dir) Node(want string) (string, error) {
	if want != "" {
		if !ValidNode(want) {
			return "", fmt.Errorf("node id %q: use 1-63 of a-z 0-9 . _ - (starting with a letter or digit)", want)
		}
		return want, nil
	}
	b, err := os.ReadFile(d.NodeFile())
	if err == nil {
		node := strings.TrimSpace(string(b))
		if !ValidNode(node) {
			return "", fmt.Errorf("node id %q in %s is not valid", node, d.NodeFile())
		}
		return node, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	return nodeFromHost(), nil
}

// saveNode resolves the node id as Node does and stores it.
func (d Dir) saveNode(want string) (string, error) {
	node, err := d.Node(want)
	if err != nil {
		return "", err
	}
	if old, err := os.ReadFile(d.NodeFile()); err == nil && strings.TrimSpace(string(old)) == node {
		return node, nil
	}
	return node, durable.WriteFile(d.NodeFile(), []byte(node+"\n"), 0o644)
}

func nodeFromHost() string {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	var b strings.Builder
	for _, c := range h {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' {
			b.WriteRune(c)
		}
	}
	node := strings.TrimLeft(b.String(), "-_")
	if len(node) > 63 {
		node = node[:63]
	}
	if !ValidNode(node) {
		node = "node"
	}
	return node
}
