package sqlviews

import (
	"fmt"
	"strings"

	"github.com/sgload/sgload/schema"
)

// Drop-in names for users moving from a seed system: the tables and columns
// their saved queries expect, as views over sgload's events and objects.
//
// Segment's SendGrid source (segment.com/docs/connections/sources/catalog/
// cloud-apps/sendgrid) loads one table per event collection (activity,
// _open, click, bounce, delivered, processed, dropped, deferred,
// unsubscribe, spam_report) and one per object collection (lists,
// segments, recipients, campaigns). Its warehouse columns are the webhook's
// JSON keys in snake_case (smtp-id is smtp_id, from is from), nested objects
// flattened with _ (url_offset_index, pool_name), arrays as JSON text, plus
// id, received_at and uuid_ts; timestamp stays the Unix seconds SendGrid
// sent (Segment's warehouse schemas, segment.com/docs/connections/storage/
// warehouses/schema).
//
// Stitch's SendGrid webhook integration (stitchdata.com/docs/integrations/
// webhooks/sendgrid) loads one append-only table, data, keyed by event,
// email and timestamp, with the _sdc_ columns, and the category arrays in
// the subtable data__category.

// segmentTable is Segment's table for an event type: open is _open (OPEN
// is reserved in Redshift), spamreport spam_report; the others keep their
// name.
func segmentTable(typ string) string {
	switch typ {
	case "open":
		return "_open"
	case "spamreport":
		return "spam_report"
	}
	return typ
}

// segmentObjects are the object collections Segment's source syncs.
var segmentObjects = []string{"lists", "segments", "recipients", "campaigns"}

// webhookColumns are the SendGrid fields as the seed systems' tables have
// them: named after the webhook's JSON keys, typed as its JSON values were
// (timestamp and send_at Unix seconds, tls and cert_err 0/1, attempt a
// string, category JSON text).
func (g *gen) webhookColumns(skip ...string) []string {
	d := g.d
	omit := map[string]bool{}
	for _, s := range skip {
		omit[s] = true
	}
	var out []string
	add := func(name, expr string) {
		switch {
		case omit[name]:
		case expr == d.ident(name):
			out = append(out, expr)
		default:
			out = append(out, expr+" AS "+d.ident(name))
		}
	}
	for _, c := range schema.EventColumns() {
		col := d.ident(c.Name)
		switch c.Name {
		case "_sequence", "_received_at", "_node", "_fingerprint", "_raw", "_errors":
		case "timestamp", "send_at":
			add(c.Name, d.epochSeconds(col))
		case "tls", "cert_err":
			add(c.Name, fmt.Sprintf("CASE WHEN %s THEN 1 WHEN NOT %s THEN 0 END", col, col))
		case "attempt":
			add(c.Name, fmt.Sprintf("CAST(%s AS %s)", col, d.typ(schema.String)))
		case "category":
			add(c.Name, d.listJSON(col))
		case "from_address":
			add("from", col)
		default:
			add(c.Name, col)
		}
	}
	return out
}

// segment writes Segment's tables.
func (g *gen) segment() []stmt {
	d := g.d
	cols := append([]string{
		g.sql("COALESCE({sg_event_id}, {_fingerprint}) AS {id}"),
		g.sql("{_received_at} AS {received_at}"),
		g.sql("{_received_at} AS {uuid_ts}"),
	}, g.webhookColumns()...)
	cols = append(cols, g.sql("{dt}"))
	sel := "SELECT\n  " + strings.Join(cols, ",\n  ") + "\nFROM " + g.table("events")
	out := []stmt{{
		comment: "Segment's SendGrid tables (--naming segment): its names and columns over sgload's events,\n" +
			"each event once. id is sg_event_id; received_at and uuid_ts are when sgload received it;\n" +
			"timestamp is Unix seconds as SendGrid sent it; category is JSON text; custom args are in\n" +
			"custom_args (JSON) rather than a column each; dt is the partition to filter on.",
		sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\n%s", g.table("activity"), sel),
	}}
	for _, t := range g.types {
		out = append(out, stmt{sql: g.expand(fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\n%s\nWHERE {event_type} = '%s'", g.table(segmentTable(t)), sel, t))})
	}
	present := map[string]bool{}
	for _, c := range g.collections() {
		present[c] = true
	}
	for _, name := range segmentObjects {
		if !present[name] {
			continue
		}
		c := schema.Collections[name]
		ocols := []string{
			g.expand(fmt.Sprintf("CAST({id} AS %s) AS {id}", d.typ(schema.String))),
			g.sql("{_synced_at} AS {received_at}"),
			g.sql("{_synced_at} AS {uuid_ts}"),
		}
		for _, f := range c.Fields {
			if f.Name == "id" {
				continue
			}
			col := d.ident(f.Name)
			if f.Kind == schema.StringList {
				col = d.listJSON(col) + " AS " + col
			}
			ocols = append(ocols, col)
		}
		st := stmt{sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n  %s\nFROM %s",
			g.table(name), strings.Join(ocols, ",\n  "), g.table(name+"_latest"))}
		if name == segmentObjects[0] {
			st.comment = "Segment's object tables: the latest state of each object (upserted by Segment every 3 hours),\nid as text, received_at and uuid_ts when sgload synced it."
		}
		out = append(out, st)
	}
	return out
}

// stitch writes Stitch's tables.
func (g *gen) stitch() []stmt {
	d := g.d
	meta := []string{
		fmt.Sprintf("%s AS %s", d.intDiv(d.ident("_sequence"), 1000), d.ident("_sdc_sequence")),
		g.sql("{_received_at} AS {_sdc_received_at}"),
		g.sql("{_received_at} AS {_sdc_batched_at}"),
	}
	cols := append(g.webhookColumns("category"), meta...)
	cols = append(cols, g.sql("{dt}"))
	rel := g.table("events") + " AS " + d.ident("e")
	from, value, index := d.unnest(rel, d.ident("e")+"."+d.ident("category"))
	sub := []string{
		g.sql("{e}.{event} AS {_sdc_source_key_event}"),
		g.sql("{e}.{email} AS {_sdc_source_key_email}"),
		d.epochSeconds(g.sql("{e}.{timestamp}")) + " AS " + d.ident("_sdc_source_key_timestamp"),
		index + " AS " + d.ident("_sdc_level_0_id"),
		value + " AS " + d.ident("value"),
		fmt.Sprintf("%s AS %s", d.intDiv(g.sql("{e}.{_sequence}"), 1000), d.ident("_sdc_sequence")),
		g.sql("{e}.{_received_at} AS {_sdc_batched_at}"),
		g.sql("{e}.{dt}"),
	}
	return []stmt{
		{
			comment: "Stitch's SendGrid table (--naming stitch): data, append-only, primary key (event, email,\n" +
				"timestamp), each event once. _sdc_sequence is Unix milliseconds at receipt (sgload's\n" +
				"_sequence / 1000), _sdc_received_at and _sdc_batched_at when sgload received it; timestamp\n" +
				"is Unix seconds as SendGrid sent it. Unlike Stitch, rows whose key has a NULL (dropped\n" +
				"events without an email) are kept. Custom args are in custom_args (JSON).",
			sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n  %s\nFROM %s", g.table("data"), strings.Join(cols, ",\n  "), g.table("events")),
		},
		{
			comment: "data's category arrays, one row per item, keyed to data by _sdc_source_key_*.",
			sql:     fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n  %s\nFROM %s", g.table("data__category"), strings.Join(sub, ",\n  "), from),
		},
	}
}
