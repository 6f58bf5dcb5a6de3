package objectsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/sendgrid"
)

// ErrMissingScopes: the API key lacks a scope a chosen collection needs.
var ErrMissingScopes = errors.New("the API key lacks scopes")

// CheckKey asks the API once, with a short deadline, for the key's scopes
// and checks them against what the collections need: a wrong key, a key
// without a scope or an unreachable API stops the sync before any work,
// in seconds. It returns sendgrid.ErrUnauthorized for a refused key,
// ErrMissingScopes naming the scopes and the collections that need them,
// ErrUnknownCollection, or the error of the request.
func CheckKey(ctx context.Context, c *sendgrid.Client, collections []string) error {
	if len(collections) == 0 {
		collections = schema.CollectionNames()
	}
	need := map[string][]string{}
	for _, n := range collections {
		src, ok := sources[n]
		if !ok {
			return fmt.Errorf("%w %q; the collections are %s", ErrUnknownCollection, n, strings.Join(schema.CollectionNames(), ", "))
		}
		need[src.scope] = append(need[src.scope], n)
	}
	have, err := c.Scopes(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for scope, cols := range need {
		if !slices.Contains(have, scope) {
			missing = append(missing, fmt.Sprintf("%s (for %s)", scope, strings.Join(cols, ", ")))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: %s", ErrMissingScopes, strings.Join(missing, "; "))
	}
	return nil
}
