package objectsync

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/sendgrid"
)

// page is a batch of objects for the spool: each is one object's JSON.
type emitFunc func(objs [][]byte) error

// fetcher reads a whole collection (or, with since, what changed after it).
type fetcher func(ctx context.Context, f *fetch, emit emitFunc) error

// fetch carries what fetchers share.
type fetch struct {
	api          *sendgrid.Client
	since        time.Time // incremental window start; zero for a full pull
	maxPages     int
	pollInterval time.Duration
	exportWait   time.Duration
	pages        int
}

// ErrEndlessPaging means the server kept returning pages past the limit or
// repeated a page token: sgload stops rather than loop forever.
var ErrEndlessPaging = errors.New("the server kept paging")

func (f *fetch) page() error {
	f.pages++
	if f.pages > f.maxPages {
		return fmt.Errorf("%w past %d pages (raise --max-pages if the collection is really that large)", ErrEndlessPaging, f.maxPages)
	}
	return nil
}

// items returns the elements of the array at key in body (the body itself
// when key is empty), each as compact JSON.
func items(body []byte, key string) ([][]byte, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("response is not JSON: %w", err)
	}
	if key != "" {
		v = v.Get(key)
		if v == nil {
			return nil, nil // an empty collection may omit the array
		}
	}
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	arr, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("response's %q is not a list", key)
	}
	out := make([][]byte, len(arr))
	for i, it := range arr {
		out[i] = it.MarshalTo(nil)
	}
	return out, nil
}

// single reads a collection that comes in one response.
func single(path, key string, q url.Values) fetcher {
	return func(ctx context.Context, f *fetch, emit emitFunc) error {
		if err := f.page(); err != nil {
			return err
		}
		resp, err := f.api.Get(ctx, path, q)
		if err != nil {
			return err
		}
		objs, err := items(resp.Body, key)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return emit(objs)
	}
}

// offsetPages reads limit/offset pages until one comes back short.
func offsetPages(path, key string, limit int, incremental bool) fetcher {
	return func(ctx context.Context, f *fetch, emit emitFunc) error {
		var last []byte
		for offset := 0; ; offset += limit {
			if err := f.page(); err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
			if incremental && !f.since.IsZero() {
				q.Set("start_time", strconv.FormatInt(f.since.Unix(), 10))
			}
			resp, err := f.api.Get(ctx, path, q)
			if err != nil {
				return err
			}
			if last != nil && bytes.Equal(resp.Body, last) && len(resp.Body) > 2 {
				return fmt.Errorf("%w: offset %d returned the same page as the one before", ErrEndlessPaging, offset)
			}
			last = resp.Body
			objs, err := items(resp.Body, key)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := emit(objs); err != nil {
				return err
			}
			if len(objs) < limit {
				return nil
			}
		}
	}
}

// numberedPages reads page=1,2,... (legacy contactdb). The API ends the
// list with a 404, may return empty pages in the middle, and is known to
// answer "No more pages" past the end.
func numberedPages(path, key string, size int) fetcher {
	return func(ctx context.Context, f *fetch, emit emitFunc) error {
		empty := 0
		for page := 1; ; page++ {
			if err := f.page(); err != nil {
				return err
			}
			resp, err := f.api.Get(ctx, path, url.Values{"page": {strconv.Itoa(page)}, "page_size": {strconv.Itoa(size)}})
			var apiErr *sendgrid.Error
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
				return nil
			}
			if err != nil {
				return err
			}
			objs, err := items(resp.Body, key)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if len(objs) == 0 {
				if empty++; empty >= 3 {
					return nil
				}
				continue
			}
			empty = 0
			if err := emit(objs); err != nil {
				return err
			}
			if len(objs) < size {
				return nil
			}
		}
	}
}

// tokenPages follows _metadata.next links (page_token pagination).
func tokenPages(path, key string, q url.Values) fetcher {
	return func(ctx context.Context, f *fetch, emit emitFunc) error {
		seen := map[string]bool{}
		next, query := path, q
		for {
			if err := f.page(); err != nil {
				return err
			}
			resp, err := f.api.Get(ctx, next, query)
			if err != nil {
				return err
			}
			objs, err := items(resp.Body, key)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := emit(objs); err != nil {
				return err
			}
			var meta struct {
				Metadata struct {
					Next string `json:"next"`
				} `json:"_metadata"`
			}
			_ = json.Unmarshal(resp.Body, &meta) // a page without _metadata has no next page
			n := meta.Metadata.Next
			if n == "" || len(objs) == 0 || !strings.Contains(n, "page_token=") {
				// A link without a page token cannot lead to another page (mock
				// servers fill _metadata.next with placeholders).
				return nil
			}
			if seen[n] {
				return fmt.Errorf("%w: next page link %s repeated", ErrEndlessPaging, redact.URL(n))
			}
			seen[n] = true
			next, query = n, nil
		}
	}
}

// fieldDefinitions merges custom and reserved fields (one response).
func fieldDefinitions(ctx context.Context, f *fetch, emit emitFunc) error {
	if err := f.page(); err != nil {
		return err
	}
	resp, err := f.api.Get(ctx, "/v3/marketing/field_definitions", nil)
	if err != nil {
		return err
	}
	custom, err := items(resp.Body, "custom_fields")
	if err != nil {
		return err
	}
	reserved, err := items(resp.Body, "reserved_fields")
	if err != nil {
		return err
	}
	for i, r := range reserved {
		var m map[string]any
		if json.Unmarshal(r, &m) == nil {
			m["reserved"] = true
			if _, ok := m["id"]; !ok {
				m["id"] = m["name"] // some reserved fields come without an id
			}
			reserved[i], _ = json.Marshal(m)
		}
	}
	return emit(append(custom, reserved...))
}

// groupMembers lists every unsubscribe group, then each group's members.
func groupMembers(ctx context.Context, f *fetch, emit emitFunc) error {
	if err := f.page(); err != nil {
		return err
	}
	resp, err := f.api.Get(ctx, "/v3/asm/groups", nil)
	if err != nil {
		return err
	}
	groups, err := items(resp.Body, "")
	if err != nil {
		return err
	}
	for _, g := range groups {
		var grp struct {
			ID json.Number `json:"id"`
		}
		if err := json.Unmarshal(g, &grp); err != nil || grp.ID == "" {
			continue
		}
		if err := f.page(); err != nil {
			return err
		}
		resp, err := f.api.Get(ctx, "/v3/asm/groups/"+grp.ID.String()+"/suppressions", nil)
		if err != nil {
			return err
		}
		var emails []string
		if err := json.Unmarshal(resp.Body, &emails); err != nil {
			return fmt.Errorf("group %s members: %w", grp.ID, err)
		}
		objs := make([][]byte, len(emails))
		for i, e := range emails {
			objs[i], _ = json.Marshal(map[string]any{"group_id": grp.ID, "email": e})
		}
		if err := emit(objs); err != nil {
			return err
		}
	}
	return nil
}

// contactsExport runs the contacts export job: create it, poll it until it
// is ready, download its files (gzipped or not; JSON lines, a JSON array or
// CSV with upper-case headers) and emit the contacts in pages.
func contactsExport(ctx context.Context, f *fetch, emit emitFunc) error {
	if err := f.page(); err != nil {
		return err
	}
	resp, err := f.api.Post(ctx, "/v3/marketing/contacts/exports", []byte(`{"file_type":"json"}`))
	if err != nil {
		return err
	}
	var job struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp.Body, &job); err != nil || job.ID == "" {
		return fmt.Errorf("contacts export: no job id in %q", truncate(resp.Body))
	}
	deadline := time.Now().Add(f.exportWait)
	var status struct {
		Status  string   `json:"status"`
		URLs    []string `json:"urls"`
		Message string   `json:"message"`
	}
	for {
		if err := f.page(); err != nil {
			return err
		}
		resp, err := f.api.Get(ctx, "/v3/marketing/contacts/exports/"+url.PathEscape(job.ID), nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(resp.Body, &status); err != nil {
			return fmt.Errorf("contacts export status: %w", err)
		}
		switch status.Status {
		case "ready":
		case "failure":
			return fmt.Errorf("contacts export %s failed: %s", job.ID, status.Message)
		default:
			if time.Now().After(deadline) {
				return fmt.Errorf("contacts export %s still %q after %s", job.ID, status.Status, f.exportWait)
			}
			if err := f.api.Sleep(ctx, f.pollInterval); err != nil {
				return err
			}
			continue
		}
		break
	}
	for _, u := range status.URLs {
		if err := downloadContacts(ctx, f, u, emit); err != nil {
			return err
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

const contactsPage = 1000

func downloadContacts(ctx context.Context, f *fetch, u string, emit emitFunc) error {
	body, err := f.api.Download(ctx, u)
	if err != nil {
		return err
	}
	defer body.Close()
	br := bufio.NewReaderSize(body, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("contacts export: %w", err)
		}
		defer gz.Close()
		r = gz
	}
	rr := bufio.NewReaderSize(r, 1<<20)
	first, _ := rr.Peek(1)
	var batch [][]byte
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := emit(batch)
		batch = nil
		return err
	}
	add := func(obj map[string]any) error {
		if _, ok := obj["contact_id"]; !ok {
			if id, ok := obj["id"]; ok {
				obj["contact_id"] = id
			}
		}
		b, _ := json.Marshal(obj)
		batch = append(batch, b)
		if len(batch) >= contactsPage {
			return flush()
		}
		return nil
	}
	switch {
	case len(first) == 1 && (first[0] == '{' || first[0] == '['):
		dec := json.NewDecoder(rr)
		dec.UseNumber()
		if first[0] == '[' {
			if _, err := dec.Token(); err != nil {
				return err
			}
		}
		for dec.More() {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				return fmt.Errorf("contacts export JSON: %w", err)
			}
			if err := add(obj); err != nil {
				return err
			}
		}
	default:
		cr := csv.NewReader(rr)
		header, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("contacts export CSV: %w", err)
		}
		for i := range header {
			header[i] = strings.ToLower(strings.TrimSpace(header[i]))
		}
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("contacts export CSV: %w", err)
			}
			obj := map[string]any{}
			for i, v := range rec {
				if i < len(header) && v != "" {
					obj[header[i]] = v
				}
			}
			if err := add(obj); err != nil {
				return err
			}
		}
	}
	return flush()
}

// activityMessages reads the Email Activity API's messages (GET
// /v3/messages), which keeps 30 days: by windows of last_event_time (the
// whole 30 days in full mode, from since in incremental mode), each halved
// while its answer is full, since the API returns at most limit messages
// and no page token.
func activityMessages(limit int) fetcher {
	return func(ctx context.Context, f *fetch, emit emitFunc) error {
		to := time.Now().UTC().Truncate(time.Second).Add(time.Second)
		from := f.since
		if from.IsZero() || from.Before(to.Add(-30*24*time.Hour)) {
			from = to.Add(-30 * 24 * time.Hour)
		}
		var window func(from, to time.Time) error
		window = func(from, to time.Time) error {
			if err := f.page(); err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}, "query": {fmt.Sprintf(`last_event_time BETWEEN TIMESTAMP "%s" AND TIMESTAMP "%s"`,
				from.Format(time.RFC3339), to.Add(-time.Second).Format(time.RFC3339))}}
			resp, err := f.api.Get(ctx, "/v3/messages", q)
			if err != nil {
				return err
			}
			objs, err := items(resp.Body, "messages")
			if err != nil {
				return fmt.Errorf("/v3/messages: %w", err)
			}
			if len(objs) >= limit && to.Sub(from) > time.Second {
				mid := from.Add(to.Sub(from) / 2).Truncate(time.Second)
				if !mid.After(from) {
					mid = from.Add(time.Second)
				}
				if err := window(from, mid); err != nil {
					return err
				}
				return window(mid, to)
			}
			return emit(objs)
		}
		for w := from; w.Before(to); w = w.Add(24 * time.Hour) {
			end := w.Add(24 * time.Hour)
			if end.After(to) {
				end = to
			}
			if err := window(w, end); err != nil {
				return err
			}
		}
		return nil
	}
}
