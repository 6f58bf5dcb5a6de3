package schema

// SpecEvents maps SendGrid event types to the Segment Spec's email event
// names (segment.com/docs/connections/spec/email). Types with no Spec event
// (processed, deferred, dropped, group_resubscribe, account_status_change,
// anything new) are absent: the Spec asks partners not to invent names for
// events that resemble its own. The activity views and sgload forward share
// this table.
var SpecEvents = map[string]string{
	"delivered":         "Email Delivered",
	"open":              "Email Opened",
	"click":             "Email Link Clicked",
	"bounce":            "Email Bounced",
	"spamreport":        "Email Marked as Spam",
	"unsubscribe":       "Unsubscribed",
	"group_unsubscribe": "Unsubscribed",
}

// ActivityColumns are the event columns the activity views keep, in order:
// what is worth having across every event type at once.
var ActivityColumns = []string{
	"event", "email", "timestamp", "sg_event_id", "sg_message_id", "smtp_id", "category",
	"asm_group_id", "ip", "useragent", "url", "reason", "status", "type", "bounce_classification",
	"marketing_campaign_id", "marketing_campaign_name", "singlesend_id", "singlesend_name",
	"template_id", "custom_args", "_fingerprint", "_sequence", "_received_at", "_node",
}
