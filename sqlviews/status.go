package sqlviews

import (
	"fmt"
	"strings"

	"github.com/sgload/sgload/schema"
)

// The latest-state views over events. Both read the events view, so they
// see every event once (the one dedupe rule), and both order events by
// their own timestamp, then _sequence and _node: the order they happened
// in, whatever order they arrived in.
//
// A message's delivery state follows SendGrid's lifecycle rather than the
// clock: processed < deferred < delivered | bounce | dropped | blocked (a
// bounce with type=blocked). A deferral stamped after the delivery, or
// delivered late, does not undo it; among the final states the latest wins.

// stateSQL is an event's state: its type, or blocked for a bounce of type
// blocked.
const stateSQL = "CASE WHEN {event_type} = 'bounce' AND {type} = 'blocked' THEN 'blocked' ELSE {event_type} END"

// stateRankSQL is its step in the delivery lifecycle (NULL for events that
// are not about delivery).
const stateRankSQL = "CASE WHEN {event_type} = 'processed' THEN 1 WHEN {event_type} = 'deferred' THEN 2 WHEN {event_type} IN ('delivered', 'bounce', 'dropped') THEN 3 END"

// humanOpenSQL is an open by a person: not a machine open (Apple Mail
// Privacy Protection fetches every message's images on delivery).
const humanOpenSQL = "{event_type} = 'open' AND NOT COALESCE({sg_machine_open}, FALSE)"

// nullsLast is a sort key that puts the rows where expr is NULL after the
// others, in either direction: NULLS LAST is not in every grammar sgload's
// SQL is checked with, and the dialects disagree on where NULLs sort.
func nullsLast(expr string) string {
	return "CASE WHEN " + expr + " IS NULL THEN 1 ELSE 0 END, " + expr
}

// firstNonNull is the first non-null value of expr in the partition, by
// the events' order: FIRST_VALUE over the whole partition with the NULLs
// sorted last (IGNORE NULLS is spelled differently in each dialect).
func firstNonNull(expr, partition string) string {
	return fmt.Sprintf("FIRST_VALUE(%s) OVER (%s ORDER BY CASE WHEN %s IS NULL THEN 1 ELSE 0 END, %s, {_sequence}, {_node} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
		expr, partition, expr, nullsLast("{timestamp}"))
}

// messageStatus is one row per sg_message_id.
func (g *gen) messageStatus() stmt {
	d := g.d
	part := "PARTITION BY {sg_message_id}"
	// The first non-null value of an attribute: the frame is the whole
	// message, so every row carries it.
	fv := func(expr string) string { return firstNonNull(expr, part) }
	agg := func(fn, cond, val string) string {
		return fmt.Sprintf("%s(CASE WHEN %s THEN %s END) OVER (%s)", fn, cond, val, part)
	}
	flag := func(cond string) string { return agg("COUNT", cond, "1") + " > 0" }
	// Each column is computed under a name of its own (m_...), so that no
	// expression can mistake a column of ev for an output column.
	cols := [][2]string{
		{"email", fv("{email}")},
		{"state", "CASE WHEN {state_rank} IS NOT NULL THEN {state} END"},
		{"state_at", "CASE WHEN {state_rank} IS NOT NULL THEN {timestamp} END"},
		{"reason", "CASE WHEN {state_rank} IS NOT NULL THEN {reason} END"},
		{"bounce_classification", "CASE WHEN {state_rank} IS NOT NULL THEN {bounce_classification} END"},
		{"processed_at", agg("MIN", "{event_type} = 'processed'", "{timestamp}")},
		{"delivered_at", agg("MIN", "{event_type} = 'delivered'", "{timestamp}")},
		{"deferrals", agg("COUNT", "{event_type} = 'deferred'", "1")},
		{"opens", agg("COUNT", humanOpenSQL, "1")},
		{"machine_opens", agg("COUNT", "{event_type} = 'open' AND {sg_machine_open}", "1")},
		{"first_open_at", agg("MIN", humanOpenSQL, "{timestamp}")},
		{"last_open_at", agg("MAX", humanOpenSQL, "{timestamp}")},
		{"clicks", agg("COUNT", "{event_type} = 'click'", "1")},
		{"first_click_at", agg("MIN", "{event_type} = 'click'", "{timestamp}")},
		{"last_click_at", agg("MAX", "{event_type} = 'click'", "{timestamp}")},
		{"unsubscribed", flag("{event_type} = 'unsubscribe'")},
		{"group_unsubscribed", flag("{event_type} = 'group_unsubscribe'")},
		{"spam_reported", flag("{event_type} = 'spamreport'")},
		{"asm_group_id", fv("{asm_group_id}")},
		{"category", fv(fmt.Sprintf("CASE WHEN %s > 0 THEN {category} END", d.listLen("{category}")))},
		{"campaign_id", fv(fmt.Sprintf("COALESCE(CAST({marketing_campaign_id} AS %s), {singlesend_id})", d.typ(schema.String)))},
		{"campaign_name", fv("COALESCE({marketing_campaign_name}, {singlesend_name})")},
		{"template_id", fv("COALESCE({template_id}, {sg_template_id})")},
		{"template_name", fv("{sg_template_name}")},
		{"first_event_at", "MIN({timestamp}) OVER (" + part + ")"},
		{"last_event_at", "MAX({timestamp}) OVER (" + part + ")"},
		{"events", "COUNT(*) OVER (" + part + ")"},
	}
	inner := []string{"{sg_message_id}"}
	outer := []string{"{sg_message_id}"}
	for _, c := range cols {
		inner = append(inner, fmt.Sprintf("%s AS {m_%s}", c[1], c[0]))
		outer = append(outer, fmt.Sprintf("{m_%s} AS {%s}", c[0], c[0]))
	}
	inner = append(inner, "ROW_NUMBER() OVER ("+part+" ORDER BY "+nullsLast("{state_rank}")+" DESC, "+nullsLast("{timestamp}")+" DESC, {_sequence} DESC, {_node} DESC) AS {m_row}")
	evCols := []string{"{sg_message_id}", "{event_type}", "{timestamp}", "{_sequence}", "{_node}", "{email}", "{type}", "{reason}",
		"{bounce_classification}", "{sg_machine_open}", "{asm_group_id}", "{category}", "{marketing_campaign_id}",
		"{marketing_campaign_name}", "{singlesend_id}", "{singlesend_name}", "{template_id}", "{sg_template_id}", "{sg_template_name}"}
	return stmt{
		comment: "One row per message (sg_message_id): its recipient, its delivery state by SendGrid's lifecycle\n" +
			"(processed < deferred < delivered | bounce | dropped | blocked; among final states the latest),\n" +
			"engagement (opens exclude machine opens, counted apart), and what it was sent as.\n" +
			"Built on events, so each event counts once.",
		sql: g.expand(fmt.Sprintf(`CREATE OR REPLACE VIEW %s AS
WITH {@ev} AS (
  SELECT
    %s,
    `+stateSQL+` AS {state},
    `+stateRankSQL+` AS {state_rank}
  FROM %s
  WHERE {sg_message_id} IS NOT NULL
),
{@ranked} AS (
  SELECT
    %s
  FROM {@ev}
)
SELECT
  %s
FROM {@ranked}
WHERE {m_row} = 1`,
			g.table("message_status"), strings.Join(evCols, ", "), g.table("events"), strings.Join(inner, ",\n    "), strings.Join(outer, ",\n  "))),
	}
}

// recipientStatus is one row per email address (lower case).
func (g *gen) recipientStatus() stmt {
	d := g.d
	latest := "ORDER BY " + nullsLast("{timestamp}") + " DESC, {_sequence} DESC, {_node} DESC"
	last := func(name, where, cols string) string {
		return fmt.Sprintf(`{@%s} AS (
  SELECT {email}, %s FROM {@ev}
  WHERE %s
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {email} %s) = 1
)`, name, cols, where, latest)
	}
	lastAt := func(cond string) string { return "MAX(CASE WHEN " + cond + " THEN {timestamp} END)" }
	count := func(cond string) string { return "COUNT(CASE WHEN " + cond + " THEN 1 END)" }
	ctes := []string{
		fmt.Sprintf(`{@ev} AS (
  SELECT LOWER({email}) AS {email}, {event_type}, {timestamp}, {_sequence}, {_node}, {sg_message_id}, {asm_group_id},
    {reason}, {bounce_classification}, {sg_machine_open},
    %s AS {state}
  FROM %s
  WHERE {email} IS NOT NULL
)`, stateSQL, g.table("events")),
		last("latest_event", "TRUE", "{state} AS {last_event}, {timestamp} AS {last_event_at}"),
		last("latest_delivery", "{state} IN ('processed', 'deferred', 'delivered', 'bounce', 'dropped', 'blocked')",
			"{state} AS {last_delivery_state}, {timestamp} AS {last_delivery_at}"),
		last("latest_bounce", "{state} = 'bounce'", "{bounce_classification}, {reason} AS {bounce_reason}"),
		// Per unsubscribe group, the latest of its group_unsubscribe and
		// group_resubscribe events says whether the address is out.
		fmt.Sprintf(`{@group_state} AS (
  SELECT {email}, {asm_group_id}, {event_type} FROM {@ev}
  WHERE {event_type} IN ('group_unsubscribe', 'group_resubscribe') AND {asm_group_id} IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {email}, {asm_group_id} %s) = 1
)`, latest),
		fmt.Sprintf(`{@group_unsubs} AS (
  SELECT {email}, %s AS {unsubscribed_groups} FROM {@group_state}
  WHERE {event_type} = 'group_unsubscribe'
  GROUP BY {email}
)`, d.sortedList("{asm_group_id}")),
		fmt.Sprintf(`{@totals} AS (
  SELECT {email},
    COUNT(*) AS {events},
    COUNT(DISTINCT {sg_message_id}) AS {messages},
    %s AS {last_delivered_at},
    %s AS {hard_bounces},
    %s AS {last_bounce_at},
    %s AS {blocks},
    %s AS {last_block_at},
    %s AS {unsubscribes},
    %s AS {unsubscribed_at},
    %s AS {spam_reports},
    %s AS {spam_reported_at},
    %s AS {last_open_at},
    %s AS {last_click_at}
  FROM {@ev}
  GROUP BY {email}
)`, lastAt("{state} = 'delivered'"), count("{state} = 'bounce'"), lastAt("{state} = 'bounce'"),
			count("{state} = 'blocked'"), lastAt("{state} = 'blocked'"),
			count("{event_type} = 'unsubscribe'"), lastAt("{event_type} = 'unsubscribe'"),
			count("{event_type} = 'spamreport'"), lastAt("{event_type} = 'spamreport'"),
			lastAt(humanOpenSQL), lastAt("{event_type} = 'click'")),
	}
	return stmt{
		comment: "One row per recipient (email, lower case): what to know before mailing the address again.\n" +
			"bounced: a hard bounce with no delivery after it (blocked likewise, for blocks);\n" +
			"unsubscribed: a global unsubscribe; unsubscribed_groups: the groups whose latest event is a\n" +
			"group_unsubscribe (a later group_resubscribe undoes it). last_open_at leaves machine opens out.",
		sql: g.expand(fmt.Sprintf(`CREATE OR REPLACE VIEW %s AS
WITH %s
SELECT
  {t}.{email},
  {le}.{last_event},
  {le}.{last_event_at},
  {ld}.{last_delivery_state},
  {ld}.{last_delivery_at},
  {t}.{last_delivered_at},
  {t}.{hard_bounces} > 0 AND NOT COALESCE({t}.{last_delivered_at} > {t}.{last_bounce_at}, FALSE) AS {bounced},
  {t}.{last_bounce_at},
  {lb}.{bounce_classification},
  {lb}.{bounce_reason},
  {t}.{blocks} > 0 AND NOT COALESCE({t}.{last_delivered_at} > {t}.{last_block_at}, FALSE) AS {blocked},
  {t}.{last_block_at},
  {t}.{unsubscribes} > 0 AS {unsubscribed},
  {t}.{unsubscribed_at},
  COALESCE({gr}.{unsubscribed_groups}, %s) AS {unsubscribed_groups},
  {t}.{spam_reports} > 0 AS {spam_reported},
  {t}.{spam_reported_at},
  {t}.{last_open_at},
  {t}.{last_click_at},
  {t}.{messages},
  {t}.{events}
FROM {@totals} AS {t}
JOIN {@latest_event} AS {le} ON {le}.{email} = {t}.{email}
LEFT JOIN {@latest_delivery} AS {ld} ON {ld}.{email} = {t}.{email}
LEFT JOIN {@latest_bounce} AS {lb} ON {lb}.{email} = {t}.{email}
LEFT JOIN {@group_unsubs} AS {gr} ON {gr}.{email} = {t}.{email}`,
			g.table("recipient_status"), strings.Join(ctes, ",\n"), d.emptyList(schema.Int64))),
	}
}
