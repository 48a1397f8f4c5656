package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ListSpec describes the query of a list route (GET /api/v1/users and
// the like): the page size it allows and the filters it takes besides
// limit and after.
type ListSpec struct {
	// DefaultLimit is the page size when ?limit= is not given; MaxLimit
	// the largest one may ask for.
	DefaultLimit, MaxLimit int
	// Filters are the route's other parameters, in the order its
	// documentation lists them.
	Filters []Filter
}

// Filter is a query parameter of a list route besides limit and after.
type Filter struct {
	Name string
	// Multi lets the parameter repeat and hold comma-separated values:
	// Parse is called with each non-empty value, trimmed. Otherwise the
	// parameter may be given once, and Parse gets its value as sent.
	Multi bool
	// Parse checks one value and records it; its error says what is
	// wrong with the parameter ("must be a positive integer").
	Parse func(value string) error
}

// Page is what a list query asks for besides its filters: at most Limit
// items with an id below After (0: from the newest).
type Page struct {
	Limit int
	After int64
}

// ParseList parses the query string of a list route by spec. Every list
// route follows the same rules:
//
//   - limit is a decimal integer from 1 to spec.MaxLimit, digits only
//     (no sign, no spaces); after is a cursor a previous page returned
//     (a positive decimal integer, digits only).
//   - limit, after and the filters that are not Multi may be given once.
//   - A parameter the route does not know is refused, so that a typo
//     does not silently list everything.
//
// Every bad parameter is named in one 400 problem, with a field error
// each, in the order of their names.
func ParseList(rawQuery string, spec ListSpec) (Page, error) {
	page := Page{Limit: spec.DefaultLimit}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return page, Errorf(CodeInvalid, "the query string is malformed")
	}
	filters := make(map[string]Filter, len(spec.Filters))
	for _, f := range spec.Filters {
		filters[f.Name] = f
	}
	var bad, unknown []FieldError
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		f, known := filters[name]
		switch {
		case name == "limit":
			f = Filter{Parse: func(v string) error {
				n, ok := digits(v)
				if !ok || n < 1 || n > int64(spec.MaxLimit) {
					return fmt.Errorf("must be an integer from 1 to %d", spec.MaxLimit)
				}
				page.Limit = int(n)
				return nil
			}}
		case name == "after":
			f = Filter{Parse: func(v string) error {
				n, ok := digits(v)
				if !ok || n < 1 {
					return fmt.Errorf("must be the next cursor of a previous page")
				}
				page.After = n
				return nil
			}}
		case !known:
			unknown = append(unknown, FieldError{Field: name, Message: "unknown parameter"})
			continue
		}
		if err := parseParam(f, vals); err != nil {
			bad = append(bad, FieldError{Field: name, Message: err.Error()})
		}
	}
	if len(bad) == 0 && len(unknown) == 0 {
		return page, nil
	}
	var parts []string
	if len(unknown) > 0 {
		names := make([]string, len(unknown))
		for i, f := range unknown {
			names[i] = strconv.Quote(f.Field)
		}
		parts = append(parts, fmt.Sprintf("unknown query parameter %s (want %s)", strings.Join(names, ", "), spec.want()))
	}
	for _, f := range bad {
		parts = append(parts, fmt.Sprintf("parameter %q: %s", f.Field, f.Message))
	}
	fields := append(bad, unknown...)
	slices.SortStableFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return page, &Error{Code: CodeInvalid, Message: strings.Join(parts, "; "), Fields: fields}
}

// parseParam gives f's Parse the values of its parameter.
func parseParam(f Filter, vals []string) error {
	if !f.Multi {
		if len(vals) != 1 {
			return fmt.Errorf("must be given once")
		}
		return f.Parse(vals[0])
	}
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			if err := f.Parse(part); err != nil {
				return err
			}
		}
	}
	return nil
}

// want lists the parameters of the route: "email, q, limit or after".
func (s ListSpec) want() string {
	var b strings.Builder
	for _, f := range s.Filters {
		b.WriteString(f.Name + ", ")
	}
	b.WriteString("limit or after")
	return b.String()
}

// digits parses s as a decimal int64 written with digits only.
func digits(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// List is one page of a list as the API shows it: the items under the
// list's name, newest first, and "next", the cursor of the following
// page (pass it as ?after=), or null on the last page.
type List[V any] struct {
	name  string
	items []V
	next  *string
}

// NewList returns the page of items that a query for at most limit of
// them returned, shown with view under name; id gives an item's id, of
// which the last is the next page's cursor when the page is full.
func NewList[T, V any](name string, items []T, limit int, view func(T) V, id func(T) int64) List[V] {
	out := List[V]{name: name, items: make([]V, len(items))}
	for i, it := range items {
		out.items[i] = view(it)
	}
	if n := len(items); n > 0 && n >= limit {
		next := strconv.FormatInt(id(items[n-1]), 10)
		out.next = &next
	}
	return out
}

// MarshalJSON writes {"<name>": [items…], "next": cursor}.
func (l List[V]) MarshalJSON() ([]byte, error) {
	items, err := json.Marshal(l.items)
	if err != nil {
		return nil, err
	}
	next, err := json.Marshal(l.next)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`{` + strconv.Quote(l.name) + `:`)
	b.Write(items)
	b.WriteString(`,"next":`)
	b.Write(next)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// JobPath is the API path of job id, which a client polls.
func JobPath(id int64) string { return fmt.Sprintf("%s/jobs/%d", Prefix, id) }
