package forward

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
)

// UserIDs finds the Segment userId of a recipient whose event carries no
// user id custom arg.
type UserIDs interface {
	UserID(email string) (string, bool)
}

// refresher is a UserIDs that can reload itself (forward --follow calls it
// between passes).
type refresher interface {
	Refresh(ctx context.Context) error
}

// UserIDMap maps email addresses (lower case) to user ids.
type UserIDMap struct {
	ids map[string]string
}

// UserID looks up email, ignoring case.
func (m *UserIDMap) UserID(email string) (string, bool) {
	id, ok := m.ids[normEmail(email)]
	return id, ok
}

// Len is the number of addresses mapped.
func (m *UserIDMap) Len() int { return len(m.ids) }

func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// LoadUserIDFile reads a CSV file of email,user_id rows (more columns are
// ignored). A first row whose first field holds no @ is a header; it may
// name the columns email and user_id in any order. An address listed twice
// keeps its last id.
func LoadUserIDFile(path string) (*UserIDMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("user id map: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.Comment = '#'
	m := &UserIDMap{ids: map[string]string{}}
	emailCol, idCol := 0, 1
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("user id map %s: %w", path, err)
		}
		if line == 1 && len(rec) > 0 && !strings.Contains(rec[0], "@") {
			for i, h := range rec {
				switch strings.ToLower(strings.TrimSpace(h)) {
				case "email":
					emailCol = i
				case "user_id", "userid":
					idCol = i
				}
			}
			continue
		}
		if len(rec) <= max(emailCol, idCol) {
			return nil, fmt.Errorf("user id map %s, row %d: want email,user_id", path, line)
		}
		email, id := normEmail(rec[emailCol]), strings.TrimSpace(rec[idCol])
		if email == "" || id == "" {
			continue
		}
		m.ids[email] = id
	}
	return m, nil
}

// Contacts maps addresses to the external_id of the synced Marketing
// Campaigns contacts (the mc_contacts collection of sgload sync): from the
// newest complete snapshot in the spool, or, when Bucket is set, the newest
// one flush committed there. Refresh loads a newer snapshot when there is
// one.
type Contacts struct {
	Spool  spool.Dir
	Bucket *bucket.Bucket
	Prefix string

	loaded string // which snapshot ids holds
	ids    map[string]string
}

// ContactsCollection is the collection whose external_id Contacts reads.
const ContactsCollection = "mc_contacts"

// ErrNoContacts is returned when no complete contacts snapshot exists.
var ErrNoContacts = errors.New("no synced contacts")

// UserID looks up email, ignoring case.
func (c *Contacts) UserID(email string) (string, bool) {
	id, ok := c.ids[normEmail(email)]
	return id, ok
}

// Len is the number of contacts with an external_id.
func (c *Contacts) Len() int { return len(c.ids) }

// Refresh loads the newest snapshot if it is not the one loaded.
func (c *Contacts) Refresh(ctx context.Context) error {
	if c.Bucket != nil {
		return c.fromBucket(ctx)
	}
	return c.fromSpool()
}

// fromSpool reads the newest snapshot segment of mc_contacts, waiting for
// flush (objects/) or flushed (done/objects/): each is one complete
// snapshot, since a snapshot's segment appears only once it is whole.
func (c *Contacts) fromSpool() error {
	var newest spool.Segment
	var newestSeq int64 = -1
	for _, dir := range []string{c.Spool.Objects(ContactsCollection), filepath.Join(c.Spool.Done(), spool.ObjectsDir, ContactsCollection)} {
		segs, err := spool.ListSegments(dir, spool.SealedSuffix)
		if err != nil {
			return fmt.Errorf("list contacts snapshots: %w", err)
		}
		for _, s := range segs {
			if _, seq, ok := spool.ParseSegmentName(s.Name()); ok && seq > newestSeq {
				newest, newestSeq = s, seq
			}
		}
	}
	if newestSeq < 0 {
		return fmt.Errorf("%w in %s (sync the %s collection, or read them from the bucket)", ErrNoContacts, c.Spool.Root, ContactsCollection)
	}
	if newest.Name() == c.loaded {
		return nil
	}
	r, err := spool.OpenReader(newest.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	ids := map[string]string{}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read contacts snapshot %s: %w", newest.Path, err)
		}
		if rec.Header[spool.HeaderSnapshot] == "complete" {
			continue
		}
		objs, ok := rec.Split()
		if !ok {
			return fmt.Errorf("contacts snapshot %s: a damaged record", newest.Path)
		}
		for _, o := range objs {
			addContact(ids, o)
		}
	}
	c.ids, c.loaded = ids, newest.Name()
	return nil
}

// addContact adds one contact's email and external_id (from its JSON).
func addContact(ids map[string]string, raw []byte) {
	var ct struct {
		Email      string `json:"email"`
		ExternalID any    `json:"external_id"`
	}
	if json.Unmarshal(raw, &ct) != nil || ct.Email == "" {
		return
	}
	var id string
	switch v := ct.ExternalID.(type) {
	case string:
		id = strings.TrimSpace(v)
	case float64:
		id = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if id != "" {
		ids[normEmail(ct.Email)] = id
	}
}

// snapshotRow and contactRow are the columns read from the bucket.
type snapshotRow struct {
	Sequence   int64  `parquet:"_sequence"`
	Collection string `parquet:"collection,optional"`
	SyncID     string `parquet:"sync_id,optional"`
	Mode       string `parquet:"mode,optional"`
}

type contactRow struct {
	SyncID string `parquet:"_sync_id"`
	Raw    string `parquet:"_raw,optional"`
}

// fromBucket reads the newest full mc_contacts snapshot committed to the
// bucket: its sync_snapshots row and its rows are in the same manifest.
func (c *Contacts) fromBucket(ctx context.Context) error {
	keys, err := layout.ListManifests(ctx, c.Bucket, c.Prefix)
	if err != nil {
		return err
	}
	var best snapshotRow
	var bestFiles []layout.File
	for _, k := range keys {
		m, err := layout.ReadManifest(ctx, c.Bucket, k)
		if err != nil {
			return err
		}
		var snaps, contacts []layout.File
		for _, f := range m.Files {
			switch {
			case f.Kind != layout.ObjectsDir:
			case f.Table == "sync_snapshots":
				snaps = append(snaps, f)
			case f.Table == ContactsCollection:
				contacts = append(contacts, f)
			}
		}
		if len(contacts) == 0 {
			continue
		}
		for _, f := range snaps {
			err := eachRow(ctx, c.Bucket, f, func(r snapshotRow) {
				if r.Collection == ContactsCollection && r.Mode == "full" && r.Sequence > best.Sequence {
					best, bestFiles = r, contacts
				}
			})
			if err != nil {
				return err
			}
		}
	}
	if best.SyncID == "" {
		return fmt.Errorf("%w in %s (sync the %s collection and flush)", ErrNoContacts, layout.Join(c.Bucket.URL(), c.Prefix), ContactsCollection)
	}
	if best.SyncID == c.loaded {
		return nil
	}
	ids := map[string]string{}
	for _, f := range bestFiles {
		err := eachRow(ctx, c.Bucket, f, func(r contactRow) {
			if r.SyncID == best.SyncID {
				addContact(ids, []byte(r.Raw))
			}
		})
		if err != nil {
			return err
		}
	}
	c.ids, c.loaded = ids, best.SyncID
	return nil
}

// eachRow calls fn with the columns of T of every row of a committed
// Parquet object, read in ranges and a few rows at a time.
func eachRow[T any](ctx context.Context, b *bucket.Bucket, f layout.File, fn func(T)) error {
	attrs, err := b.Attributes(ctx, f.Key)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Key, err)
	}
	pf, err := parquet.OpenFile(b.ReaderAt(ctx, f.Key), attrs.Size, parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Key, err)
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	buf := make([]T, 256)
	for {
		n, err := r.Read(buf)
		for _, row := range buf[:n] {
			fn(row)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Key, err)
		}
	}
}

// chain asks each UserIDs in turn.
type chain []UserIDs

func (c chain) UserID(email string) (string, bool) {
	for _, u := range c {
		if id, ok := u.UserID(email); ok {
			return id, true
		}
	}
	return "", false
}

func (c chain) Refresh(ctx context.Context) error {
	for _, u := range c {
		if r, ok := u.(refresher); ok {
			if err := r.Refresh(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Chain returns a UserIDs that asks each of us in turn (nil ones left out).
func Chain(us ...UserIDs) UserIDs {
	var c chain
	for _, u := range us {
		if u != nil {
			c = append(c, u)
		}
	}
	return c
}
