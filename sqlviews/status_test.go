package sqlviews

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// genStatusEvents makes SendGrid events for the latest-state views: every
// event type, messages that end in every delivery state, deferrals stamped
// after the delivery, group unsubscribes undone by resubscribes (some
// stamped before the unsubscribe they answer), machine opens, twin opens in
// one second, events without an sg_event_id or a timestamp, dropped events
// without an email, recipients whose address changes case, and events that
// belong to no message. Timestamps of one recipient's events are distinct
// (save the twins), so "the latest" never depends on arrival order.
func genStatusEvents(seed uint64) []map[string]any {
	r := rand.New(rand.NewPCG(seed, 12))
	const recipients, messages = 40, 160
	base := int64(1767225600) // 2026-01-01
	var out []map[string]any
	id := 0
	nextID := func() string { id++; return fmt.Sprintf("ev-%05d", id) }
	for m := 0; m < messages; m++ {
		rcpt := r.IntN(recipients)
		email := fmt.Sprintf("user%02d@example.com", rcpt)
		msg := fmt.Sprintf("msg-%04d.filter0001", m)
		t0 := base + int64(m)*3600 // one hour per message: a recipient's events never share a second
		offsets := r.Perm(3000)    // distinct seconds inside the hour
		off := 0
		at := func() int64 { off++; return t0 + int64(offsets[off]) }
		common := map[string]any{"sg_message_id": msg, "email": email}
		switch r.IntN(4) {
		case 0:
			common["category"] = "newsletter"
		case 1:
			common["category"] = []any{"welcome", fmt.Sprintf("c%d", m%3)}
		case 2:
			common["category"] = []any{}
		}
		switch r.IntN(3) {
		case 0:
			common["marketing_campaign_id"] = 1000 + m%5
			common["marketing_campaign_name"] = fmt.Sprintf("campaign %d", m%5)
		case 1:
			common["singlesend_id"] = fmt.Sprintf("ss-%d", m%4)
			common["singlesend_name"] = fmt.Sprintf("single send %d", m%4)
		}
		if r.IntN(2) == 0 {
			common["sg_template_id"] = fmt.Sprintf("d-%03d", m%7)
			common["sg_template_name"] = fmt.Sprintf("template %d", m%7)
		}
		ev := func(typ string, extra map[string]any) map[string]any {
			e := map[string]any{"event": typ, "timestamp": at(), "sg_event_id": nextID()}
			for k, v := range common {
				e[k] = v
			}
			for k, v := range extra {
				e[k] = v
			}
			if r.IntN(12) == 0 { // the address in another case
				if s, ok := e["email"].(string); ok {
					e["email"] = strings.ToUpper(s[:1]) + s[1:len(s)-3] + "COM"
				}
			}
			out = append(out, e)
			return e
		}
		// A message's events come from its sorted offsets, but which
		// event gets which second is shuffled: deferrals after the
		// delivery, opens before it.
		if m%29 == 5 {
			// Only an open: the delivery events came before sgload was
			// installed.
			ev("open", nil)
			continue
		}
		if r.IntN(10) > 0 {
			ev("processed", nil)
		}
		for i := r.IntN(3); i > 0; i-- {
			ev("deferred", map[string]any{"response": "400 try again later", "attempt": fmt.Sprint(i)})
		}
		final := r.IntN(100)
		switch {
		case final < 55:
			ev("delivered", map[string]any{"response": "250 OK", "tls": 1})
		case final < 65:
			ev("bounce", map[string]any{"type": "bounce", "reason": "550 unknown user", "status": "5.1.1", "bounce_classification": "Invalid Address"})
		case final < 73:
			ev("bounce", map[string]any{"type": "blocked", "reason": "421 blocked", "status": "4.0.0", "bounce_classification": "Reputation"})
		case final < 80:
			e := ev("dropped", map[string]any{"reason": "Bounced Address", "status": "5.0.0"})
			if r.IntN(3) == 0 {
				e["email"] = nil // SendGrid sends some drops without the address
			}
		case final < 88:
			// no final state: processed or deferred is the last word
		default:
			// delivered, then a late bounce for the same message
			ev("delivered", map[string]any{"response": "250 OK"})
			ev("bounce", map[string]any{"type": "bounce", "reason": "late", "bounce_classification": "Mailbox Unavailable"})
		}
		if final < 55 || final >= 88 {
			for i := r.IntN(4); i > 0; i-- {
				extra := map[string]any{"useragent": "Mozilla", "ip": "203.0.113.9"}
				switch r.IntN(3) {
				case 0:
					extra["sg_machine_open"] = true
				case 1:
					extra["sg_machine_open"] = false
				}
				ev("open", extra)
			}
			if r.IntN(8) == 0 { // twins: two opens in one second, two ids
				a := ev("open", nil)
				b := ev("open", nil)
				b["timestamp"], b["email"] = a["timestamp"], a["email"]
			}
			for i := r.IntN(3); i > 0; i-- {
				ev("click", map[string]any{"url": "https://example.com/x", "url_offset": map[string]any{"index": i, "type": "html"}})
			}
			if r.IntN(15) == 0 {
				e := ev("click", map[string]any{"url": "https://example.com/no-time"})
				delete(e, "timestamp")
			}
			if r.IntN(12) == 0 {
				e := ev("unsubscribe", nil)
				if r.IntN(2) == 0 {
					delete(e, "sg_event_id") // deduplicated by content
				}
			}
			if r.IntN(15) == 0 {
				ev("spamreport", nil)
			}
			if r.IntN(5) == 0 {
				g := 1 + r.IntN(3)
				ev("group_unsubscribe", map[string]any{"asm_group_id": g})
				if r.IntN(2) == 0 {
					ev("group_resubscribe", map[string]any{"asm_group_id": g})
				}
			}
		}
		if r.IntN(20) == 0 {
			ev("brand_new_event", nil)
		}
	}
	for i := 0; i < 3; i++ { // account events: no email, no message
		out = append(out, map[string]any{"event": "account_status_change", "timestamp": base + int64(i), "sg_event_id": nextID(), "type": "compliance_suspend"})
	}
	return out
}

// statusPosts turns events into the two nodes' POSTs: shuffled (arrival
// order is not event order), with retries of some events (the same bytes,
// or re-encoded) to the same node and to the other one.
func statusPosts(seed uint64, events []map[string]any) map[string][][]byte {
	r := rand.New(rand.NewPCG(seed, 13))
	var lines [][]byte
	for _, e := range events {
		b, _ := json.Marshal(e)
		lines = append(lines, b)
	}
	r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	nodes := map[string][][]byte{}
	for _, l := range lines {
		node := []string{"node-a", "node-b"}[r.IntN(2)]
		nodes[node] = append(nodes[node], l)
		switch r.IntN(8) {
		case 0: // SendGrid retries the batch at the same node
			nodes[node] = append(nodes[node], l)
		case 1: // or at the other one, re-encoded
			var buf bytes.Buffer
			json.Indent(&buf, l, "", " ")
			other := map[string]string{"node-a": "node-b", "node-b": "node-a"}[node]
			nodes[other] = append(nodes[other], buf.Bytes())
		}
	}
	return nodes
}

// The oracle: what the views must say, computed from the events in Go.

type oEvent struct {
	table  string
	email  any // string or nil
	msg    string
	ts     *time.Time
	typ    string
	raw    map[string]any
	reason any
	class  any
}

func (e oEvent) state() string {
	if e.table == "bounce" && e.typ == "blocked" {
		return "blocked"
	}
	return e.table
}

func (e oEvent) rank() int {
	switch e.table {
	case "processed":
		return 1
	case "deferred":
		return 2
	case "delivered", "bounce", "dropped":
		return 3
	}
	return 0
}

func (e oEvent) machineOpen() bool { v, _ := e.raw["sg_machine_open"].(bool); return v }
func (e oEvent) humanOpen() bool   { return e.table == "open" && !e.machineOpen() }

// before: the events' order (timestamp, events without one last).
func before(a, b oEvent) bool {
	switch {
	case a.ts == nil:
		return false
	case b.ts == nil:
		return true
	}
	return a.ts.Before(*b.ts)
}

func oracleEvents(t *testing.T, posts map[string][][]byte) []oEvent {
	var or spooltest.Oracle
	seen := map[string]bool{}
	var out []oEvent
	for _, node := range []string{"node-a", "node-b"} {
		for _, l := range posts[node] {
			k := or.Key(t, l)
			if seen[k] {
				continue
			}
			seen[k] = true
			var raw map[string]any
			d := json.NewDecoder(bytes.NewReader(l))
			d.UseNumber()
			if err := d.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			e := oEvent{table: or.Table(t, l), email: raw["email"], raw: raw, reason: raw["reason"], class: raw["bounce_classification"]}
			e.msg, _ = raw["sg_message_id"].(string)
			e.typ, _ = raw["type"].(string)
			if n, ok := raw["timestamp"].(json.Number); ok {
				s, _ := n.Int64()
				ts := time.Unix(s, 0).UTC()
				e.ts = &ts
			}
			out = append(out, e)
		}
	}
	return out
}

func tsOf(e oEvent) any {
	if e.ts == nil {
		return nil
	}
	return *e.ts
}

// firstOf is the value of the earliest event for which get says ok.
func firstOf(evs []oEvent, get func(oEvent) (any, bool)) any {
	var best *oEvent
	var val any
	for i := range evs {
		v, ok := get(evs[i])
		if ok && (best == nil || before(evs[i], *best)) {
			best, val = &evs[i], v
		}
	}
	return val
}

func extremeTime(evs []oEvent, want func(oEvent) bool, later bool) any {
	var out *time.Time
	for _, e := range evs {
		if !want(e) || e.ts == nil {
			continue
		}
		if out == nil || (later && e.ts.After(*out)) || (!later && e.ts.Before(*out)) {
			out = e.ts
		}
	}
	if out == nil {
		return nil
	}
	return *out
}

func count(evs []oEvent, want func(oEvent) bool) int64 {
	n := int64(0)
	for _, e := range evs {
		if want(e) {
			n++
		}
	}
	return n
}

func str(v any) (any, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case json.Number:
		return s.String(), true
	}
	return nil, false
}

func categoryOf(e oEvent) (any, bool) {
	switch c := e.raw["category"].(type) {
	case string:
		return []any{c}, true
	case []any:
		if len(c) > 0 {
			return c, true
		}
	}
	return nil, false
}

func expectMessageStatus(evs []oEvent) map[string]map[string]any {
	byMsg := map[string][]oEvent{}
	for _, e := range evs {
		if e.msg != "" {
			byMsg[e.msg] = append(byMsg[e.msg], e)
		}
	}
	is := func(table string) func(oEvent) bool { return func(e oEvent) bool { return e.table == table } }
	out := map[string]map[string]any{}
	for msg, es := range byMsg {
		row := map[string]any{"sg_message_id": msg}
		var st *oEvent // the delivery state: highest lifecycle step, then latest
		for i := range es {
			e := es[i]
			if e.rank() == 0 {
				continue
			}
			if st == nil || e.rank() > st.rank() || (e.rank() == st.rank() && before(*st, e)) {
				st = &es[i]
			}
		}
		row["state"], row["state_at"], row["reason"], row["bounce_classification"] = nil, nil, nil, nil
		if st != nil {
			row["state"], row["state_at"], row["reason"], row["bounce_classification"] = st.state(), tsOf(*st), st.reason, st.class
		}
		row["email"] = firstOf(es, func(e oEvent) (any, bool) { return e.email, e.email != nil })
		row["processed_at"] = extremeTime(es, is("processed"), false)
		row["delivered_at"] = extremeTime(es, is("delivered"), false)
		row["deferrals"] = count(es, is("deferred"))
		row["opens"] = count(es, oEvent.humanOpen)
		row["machine_opens"] = count(es, func(e oEvent) bool { return e.table == "open" && e.machineOpen() })
		row["first_open_at"] = extremeTime(es, oEvent.humanOpen, false)
		row["last_open_at"] = extremeTime(es, oEvent.humanOpen, true)
		row["clicks"] = count(es, is("click"))
		row["first_click_at"] = extremeTime(es, is("click"), false)
		row["last_click_at"] = extremeTime(es, is("click"), true)
		row["unsubscribed"] = count(es, is("unsubscribe")) > 0
		row["group_unsubscribed"] = count(es, is("group_unsubscribe")) > 0
		row["spam_reported"] = count(es, is("spamreport")) > 0
		row["asm_group_id"] = firstOf(es, func(e oEvent) (any, bool) {
			n, ok := e.raw["asm_group_id"].(json.Number)
			v, _ := n.Int64()
			return v, ok
		})
		row["category"] = firstOf(es, categoryOf)
		row["campaign_id"] = firstOf(es, func(e oEvent) (any, bool) {
			if v, ok := str(e.raw["marketing_campaign_id"]); ok {
				return v, true
			}
			return str(e.raw["singlesend_id"])
		})
		row["campaign_name"] = firstOf(es, func(e oEvent) (any, bool) {
			if v, ok := str(e.raw["marketing_campaign_name"]); ok {
				return v, true
			}
			return str(e.raw["singlesend_name"])
		})
		row["template_id"] = firstOf(es, func(e oEvent) (any, bool) {
			if v, ok := str(e.raw["template_id"]); ok {
				return v, true
			}
			return str(e.raw["sg_template_id"])
		})
		row["template_name"] = firstOf(es, func(e oEvent) (any, bool) { return str(e.raw["sg_template_name"]) })
		all := func(oEvent) bool { return true }
		row["first_event_at"] = extremeTime(es, all, false)
		row["last_event_at"] = extremeTime(es, all, true)
		row["events"] = int64(len(es))
		out[msg] = row
	}
	return out
}

// latest is the most recent event (events without a timestamp count as
// the oldest).
func latest(es []oEvent, want func(oEvent) bool) *oEvent {
	var best *oEvent
	for i := range es {
		if !want(es[i]) {
			continue
		}
		if best == nil || (best.ts == nil && es[i].ts != nil) || (best.ts != nil && es[i].ts != nil && es[i].ts.After(*best.ts)) {
			best = &es[i]
		}
	}
	return best
}

func expectRecipientStatus(evs []oEvent) map[string]map[string]any {
	byEmail := map[string][]oEvent{}
	for _, e := range evs {
		if s, ok := e.email.(string); ok {
			byEmail[strings.ToLower(s)] = append(byEmail[strings.ToLower(s)], e)
		}
	}
	state := func(s string) func(oEvent) bool { return func(e oEvent) bool { return e.state() == s } }
	out := map[string]map[string]any{}
	for email, es := range byEmail {
		row := map[string]any{"email": email}
		le := latest(es, func(oEvent) bool { return true })
		row["last_event"], row["last_event_at"] = le.state(), tsOf(*le)
		row["last_delivery_state"], row["last_delivery_at"] = nil, nil
		if ld := latest(es, func(e oEvent) bool { return e.rank() > 0 }); ld != nil {
			row["last_delivery_state"], row["last_delivery_at"] = ld.state(), tsOf(*ld)
		}
		delivered := extremeTime(es, state("delivered"), true)
		row["last_delivered_at"] = delivered
		after := func(last any) bool { // a delivery after last
			return delivered != nil && last != nil && delivered.(time.Time).After(last.(time.Time))
		}
		lastBounce := extremeTime(es, state("bounce"), true)
		row["bounced"] = count(es, state("bounce")) > 0 && !after(lastBounce)
		row["last_bounce_at"] = lastBounce
		row["bounce_classification"], row["bounce_reason"] = nil, nil
		if lb := latest(es, state("bounce")); lb != nil {
			row["bounce_classification"], row["bounce_reason"] = lb.class, lb.reason
		}
		lastBlock := extremeTime(es, state("blocked"), true)
		row["blocked"] = count(es, state("blocked")) > 0 && !after(lastBlock)
		row["last_block_at"] = lastBlock
		row["unsubscribed"] = count(es, state("unsubscribe")) > 0
		row["unsubscribed_at"] = extremeTime(es, state("unsubscribe"), true)
		groups := []any{}
		for g := int64(1); g <= 3; g++ {
			ge := latest(es, func(e oEvent) bool {
				n, _ := e.raw["asm_group_id"].(json.Number)
				v, _ := n.Int64()
				return (e.table == "group_unsubscribe" || e.table == "group_resubscribe") && v == g
			})
			if ge != nil && ge.table == "group_unsubscribe" {
				groups = append(groups, g)
			}
		}
		row["unsubscribed_groups"] = groups
		row["spam_reported"] = count(es, state("spamreport")) > 0
		row["spam_reported_at"] = extremeTime(es, state("spamreport"), true)
		row["last_open_at"] = extremeTime(es, oEvent.humanOpen, true)
		row["last_click_at"] = extremeTime(es, state("click"), true)
		msgs := map[string]bool{}
		for _, e := range es {
			if e.msg != "" {
				msgs[e.msg] = true
			}
		}
		row["messages"] = int64(len(msgs))
		row["events"] = int64(len(es))
		out[email] = row
	}
	return out
}

// viewRows reads a view into rows keyed by key, with DuckDB's values made
// comparable (times in UTC, lists as []any of Go values).
func viewRows(t *testing.T, q func(string) ([]string, [][]any), query, key string) map[string]map[string]any {
	cols, rows := q(query)
	out := map[string]map[string]any{}
	for _, r := range rows {
		row := map[string]any{}
		for i, c := range cols {
			v := r[i]
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC()
			}
			row[c] = v
		}
		out[fmt.Sprint(row[key])] = row
	}
	return out
}

// TestLatestStateViews flushes generated events (every type, out of order,
// with retries across two nodes) and checks message_status and
// recipient_status, run by DuckDB, row by row against the oracle above.
func TestLatestStateViews(t *testing.T) {
	events := genStatusEvents(7)
	posts := statusPosts(7, events)
	b := testbucket.Open(t, "file")
	for node, lines := range posts {
		root := t.TempDir()
		spooltest.Fill(t, root, lines, spooltest.Options{Node: node, PerPost: 23})
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: "st"}); err != nil {
			t.Fatal(err)
		}
	}
	types, err := layout.EventTypes(context.Background(), b.Bucket, "st")
	if err != nil {
		t.Fatal(err)
	}
	if len(types) < len(statusTypes) {
		t.Fatalf("only %d event types in the bucket: %v", len(types), types)
	}
	var sql bytes.Buffer
	if err := Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Prefix: "st", EventTypes: types, Collections: []string{}}); err != nil {
		t.Fatal(err)
	}
	db := duckcheck.Open(t)
	duckcheck.Exec(t, db, sql.String())
	q := func(query string) ([]string, [][]any) { return duckcheck.Query(t, db, query) }
	evs := oracleEvents(t, posts)
	if raw, dedup := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events_raw"), duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events"); raw <= dedup || dedup != int64(len(evs)) {
		t.Fatalf("events_raw %d rows, events %d, distinct events %d: the retries must be in the files and out of the view", raw, dedup, len(evs))
	}

	wantMsg := expectMessageStatus(evs)
	gotMsg := viewRows(t, q, "SELECT * FROM sendgrid.message_status", "sg_message_id")
	if diff := cmp.Diff(wantMsg, gotMsg); diff != "" {
		t.Errorf("message_status differs from the oracle (-want +got):\n%s", diff)
	}
	wantRcpt := expectRecipientStatus(evs)
	gotRcpt := viewRows(t, q, "SELECT * FROM sendgrid.recipient_status", "email")
	if diff := cmp.Diff(wantRcpt, gotRcpt); diff != "" {
		t.Errorf("recipient_status differs from the oracle (-want +got):\n%s", diff)
	}

	// README's example runs, and names exactly the addresses the oracle
	// says not to mail.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sql\n(-- DuckDB: who not to send.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README lost its recipient_status example")
	}
	var wantOut []string
	for email, r := range wantRcpt {
		if r["bounced"] == true || r["unsubscribed"] == true || r["spam_reported"] == true || slices.Contains(r["unsubscribed_groups"].([]any), any(int64(2))) {
			wantOut = append(wantOut, email)
		}
	}
	var gotOut []string
	for _, r := range duckcheck.Rows(t, db, string(m[1])) {
		gotOut = append(gotOut, r[0].(string))
	}
	sort.Strings(wantOut)
	sort.Strings(gotOut)
	if diff := cmp.Diff(wantOut, gotOut); diff != "" || len(wantOut) == 0 {
		t.Errorf("README's query (-want +got):\n%s", diff)
	}

	// The data must exercise what the views decide, or the comparison
	// above proves little.
	states := map[any]int{}
	for _, r := range wantMsg {
		states[r["state"]]++
	}
	var cover []string
	for _, s := range []any{"processed", "deferred", "delivered", "bounce", "dropped", "blocked", nil} {
		if states[s] == 0 {
			cover = append(cover, fmt.Sprintf("no message ends %v", s))
		}
	}
	var late, undone, resub, machine int
	for _, e := range evs {
		if e.table == "deferred" && e.ts != nil {
			if d := latest(evs, func(x oEvent) bool { return x.msg == e.msg && x.table == "delivered" }); d != nil && d.ts.Before(*e.ts) {
				late++
			}
		}
		if e.table == "open" && e.machineOpen() {
			machine++
		}
	}
	for _, r := range wantRcpt {
		if r["last_bounce_at"] != nil && r["bounced"] == false {
			undone++
		}
	}
	for _, e := range evs {
		if e.table == "group_resubscribe" {
			resub++
		}
	}
	for what, n := range map[string]int{"deferral stamped after its delivery": late, "bounce undone by a later delivery": undone,
		"group_resubscribe": resub, "machine open": machine} {
		if n == 0 {
			cover = append(cover, "no "+what)
		}
	}
	sort.Strings(cover)
	if len(cover) > 0 {
		t.Errorf("the generated data does not cover: %s", strings.Join(cover, "; "))
	}
}

// statusTypes are the event types genStatusEvents writes.
var statusTypes = []string{"processed", "deferred", "delivered", "bounce", "dropped", "open", "click", "unsubscribe",
	"spamreport", "group_unsubscribe", "group_resubscribe", "account_status_change", "brand_new_event"}
