package schema

import "fmt"

// Kind is a column's logical type.
type Kind uint8

const (
	String     Kind = iota + 1 // UTF-8 text
	Int64                      // 64-bit signed integer
	Bool                       // boolean
	Timestamp                  // microseconds since the Unix epoch, UTC
	StringList                 // list of UTF-8 strings
)

func (k Kind) String() string {
	switch k {
	case String:
		return "STRING"
	case Int64:
		return "INT64"
	case Bool:
		return "BOOLEAN"
	case Timestamp:
		return "TIMESTAMP"
	case StringList:
		return "LIST<STRING>"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Column is one typed column.
type Column struct {
	Name     string
	Kind     Kind
	Required bool   // never null
	Doc      string // what it holds and where it comes from
}

// Table is a table's name and columns, in file order.
type Table struct {
	Name    string
	Columns []Column
	// Key lists the primary-key columns of object tables (empty for events).
	Key []string
	// Doc says what a row is.
	Doc string
	// event marks the event tables, which share one shape.
	event bool
}

// SchemaName names the table's Parquet schema: all event tables share one
// (EventSchemaName), so one writer serves them all; others use their name.
func (t *Table) SchemaName() string {
	if t.event {
		return EventSchemaName
	}
	return t.Name
}

// Index returns the position of the named column, or -1.
func (t *Table) Index(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// MustIndex is Index for names the caller knows exist.
func (t *Table) MustIndex(name string) int {
	i := t.Index(name)
	if i < 0 {
		panic("schema: table " + t.Name + " has no column " + name)
	}
	return i
}
