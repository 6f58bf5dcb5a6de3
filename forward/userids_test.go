package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/segmentcom"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/objectsync"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
)

// contactsAPI is SendGrid's contacts export job, scripted: the export
// holds the contacts of ids (email -> external_id, "" for none).
type contactsAPI struct {
	mu  sync.Mutex
	ids map[string]string
	srv *httptest.Server
}

func newContactsAPI(t *testing.T, ids map[string]string) *contactsAPI {
	a := &contactsAPI{ids: ids}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v3/marketing/contacts/exports":
			w.WriteHeader(202)
			json.NewEncoder(w).Encode(map[string]any{"id": "job-1"})
		case "/v3/marketing/contacts/exports/job-1":
			json.NewEncoder(w).Encode(map[string]any{"id": "job-1", "status": "ready", "urls": []string{a.srv.URL + "/download/contacts.json"}})
		case "/download/contacts.json":
			a.mu.Lock()
			defer a.mu.Unlock()
			i := 0
			for email, ext := range a.ids {
				c := map[string]any{"id": fmt.Sprintf("c%d", i), "email": email}
				if ext != "" {
					c["external_id"] = ext
				}
				json.NewEncoder(w).Encode(c)
				i++
			}
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *contactsAPI) set(ids map[string]string) {
	a.mu.Lock()
	a.ids = ids
	a.mu.Unlock()
}

// sync runs sgload sync of the contacts into the spool at root.
func (a *contactsAPI) sync(t *testing.T, root string) {
	t.Helper()
	api, err := sendgrid.New(a.srv.URL, "SG.key", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := objectsync.Run(context.Background(), objectsync.Options{Spool: spool.Dir{Root: root}, Node: "fw", Client: api,
		Collections: []string{ContactsCollection}, PollInterval: time.Millisecond})
	if err != nil || len(sum.Failed) != 0 {
		t.Fatalf("sync: %v %+v", err, sum)
	}
}

// userIDs forwards events for the addresses and returns each address's
// userId (or "anon" for an anonymousId), and the summary.
func userIDs(t *testing.T, root string, m Mapping) (map[string]string, *Summary) {
	t.Helper()
	rcv := segmentcom.New(t, writeKey)
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, WriteKey: writeKey, Endpoint: rcv.URL, Mapping: m})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range rcv.Calls() {
		var call struct {
			UserID      string `json:"userId"`
			AnonymousID string `json:"anonymousId"`
			Context     struct {
				Traits struct {
					Email string `json:"email"`
				} `json:"traits"`
			} `json:"context"`
		}
		json.Unmarshal([]byte(c.Raw), &call)
		id := call.UserID
		if id == "" && call.AnonymousID != "" {
			id = "anon"
		}
		out[call.Context.Traits.Email] = id
	}
	return out, sum
}

// eventsFor is one delivered event per address; the last carries a
// user_id custom arg, which wins over any mapping.
func eventsFor(emails ...string) [][]byte {
	var out [][]byte
	for i, e := range emails {
		arg := ""
		if i == len(emails)-1 {
			arg = `,"user_id":"from-arg"`
		}
		out = append(out, []byte(fmt.Sprintf(`{"event":"delivered","email":%q,"timestamp":1767225600,"sg_event_id":"u-%d"%s}`, e, i, arg)))
	}
	return out
}

// TestUserIDFromFile: events without a user_id custom arg take the userId
// mapped to their address in a CSV file (any case, columns named in a
// header), before --anonymous; the custom arg still wins.
func TestUserIDFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.csv")
	os.WriteFile(path, []byte("user_id,email\nU-1, Ada@Example.com\nU-2,bob@example.com\n# a comment\nU-9,last@example.com\n"), 0o644)
	ids, err := LoadUserIDFile(path)
	if err != nil || ids.Len() != 3 {
		t.Fatalf("%v, %d ids", err, ids.Len())
	}
	root := t.TempDir()
	fill(t, root, eventsFor("ada@example.COM", "bob@example.com", "carol@example.com", "last@example.com"))
	got, sum := userIDs(t, root, Mapping{UserIDArg: "user_id", UserIDs: ids, Anonymous: true})
	want := map[string]string{"ada@example.COM": "U-1", "bob@example.com": "U-2", "carol@example.com": "anon", "last@example.com": "from-arg"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("userIds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{SourceMapping: 2, SourceAnonymous: 1, SourceCustomArg: 1}, sum.UserIDs); diff != "" {
		t.Errorf("summary's user id sources (-want +got):\n%s", diff)
	}

	for name, body := range map[string]string{"one column": "ada@example.com\n", "no file": ""} {
		p := filepath.Join(t.TempDir(), "bad.csv")
		if body != "" {
			os.WriteFile(p, []byte(body), 0o644)
		}
		if _, err := LoadUserIDFile(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestUserIDFromContacts syncs the Marketing Campaigns contacts (the export
// job) into the spool and maps addresses to their external_id: from the
// newest snapshot in the spool, before and after flush moves it to done/,
// and from the bucket flush committed it to; a newer sync replaces the
// mapping on Refresh.
func TestUserIDFromContacts(t *testing.T) {
	api := newContactsAPI(t, map[string]string{"ada@example.com": "ext-ada", "Bob@Example.com": "ext-bob", "carol@example.com": ""})
	root := t.TempDir()
	emails := []string{"ada@example.com", "bob@example.com", "carol@example.com", "dan@example.com", "last@example.com"}
	fill(t, root, eventsFor(emails...))

	c := &Contacts{Spool: spool.Dir{Root: root}}
	if err := c.Refresh(context.Background()); !errors.Is(err, ErrNoContacts) {
		t.Fatalf("before any sync: %v, want ErrNoContacts", err)
	}
	api.sync(t, root)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, sum := userIDs(t, root, Mapping{UserIDArg: "user_id", UserIDs: c})
	want := map[string]string{"ada@example.com": "ext-ada", "bob@example.com": "ext-bob", "last@example.com": "from-arg"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("userIds from the spool's contacts (-want +got):\n%s", diff)
	}
	if sum.Skipped[SkipNoUserID] != 2 {
		t.Errorf("skipped %v: carol (no external_id) and dan (no contact) have no userId", sum.Skipped)
	}

	// A newer sync: Refresh takes it, and the older one is forgotten.
	api.set(map[string]string{"ada@example.com": "ext-ada-2", "carol@example.com": "ext-carol"})
	api.sync(t, root)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	check := func(where string, u UserIDs) {
		t.Helper()
		for email, want := range map[string]string{"ada@example.com": "ext-ada-2", "CAROL@example.com": "ext-carol", "bob@example.com": ""} {
			if got, _ := u.UserID(email); got != want {
				t.Errorf("%s: %s -> %q, want %q", where, email, got, want)
			}
		}
	}
	check("spool", c)

	// flush commits both snapshots and moves them to done/.
	b := testbucket.Open(t, "file")
	if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: "sg"}); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "objects", ContactsCollection, "*.ndjson")); len(left) != 0 {
		t.Fatalf("flush left %v", left)
	}
	fromDone := &Contacts{Spool: spool.Dir{Root: root}}
	if err := fromDone.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("done/", fromDone)
	fromBucket := &Contacts{Bucket: b.Bucket, Prefix: "sg"}
	if err := fromBucket.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("bucket", fromBucket)
	if err := (&Contacts{Bucket: b.Bucket, Prefix: "elsewhere"}).Refresh(context.Background()); !errors.Is(err, ErrNoContacts) {
		t.Errorf("an empty prefix: %v, want ErrNoContacts", err)
	}

	// The file first, then the contacts, then anonymous.
	path := filepath.Join(t.TempDir(), "ids.csv")
	os.WriteFile(path, []byte("dan@example.com,file-dan\nada@example.com,file-ada\n"), 0o644)
	file, err := LoadUserIDFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := Chain(file, c)
	for email, want := range map[string]string{"ada@example.com": "file-ada", "dan@example.com": "file-dan", "carol@example.com": "ext-carol"} {
		if got, _ := u.UserID(email); got != want {
			t.Errorf("chain: %s -> %q, want %q", email, got, want)
		}
	}
}
