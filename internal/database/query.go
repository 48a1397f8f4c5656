package database

import (
	"context"
	"strings"
)

// Scanner is a row to read: *sql.Row or *sql.Rows.
type Scanner interface {
	Scan(dest ...any) error
}

// QueryAll runs query with args on q and returns every row it selects,
// each read with scan; there are none in an empty, non-nil slice.
func QueryAll[T any](ctx context.Context, q Querier, query string, args []any, scan func(Scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Select builds a SELECT a condition at a time, for the lists of the
// API, which page through rows newest (highest id) first.
type Select struct {
	b    strings.Builder
	args []any
	n    int // conditions so far
}

// NewSelect starts a SELECT: base is "SELECT columns FROM table".
func NewSelect(base string) *Select {
	s := &Select{}
	s.b.WriteString(base)
	return s
}

// Where adds cond, with its ? placeholders' args, to the conditions the
// rows must all meet.
func (s *Select) Where(cond string, args ...any) *Select {
	if s.n == 0 {
		s.b.WriteString(" WHERE ")
	} else {
		s.b.WriteString(" AND ")
	}
	s.n++
	s.b.WriteString(cond)
	s.args = append(s.args, args...)
	return s
}

// Newest completes the query with a page of at most limit rows, newest
// first, whose ids are below afterID (from the newest when it is 0), and
// returns it with its args.
func (s *Select) Newest(afterID int64, limit int) (string, []any) {
	if afterID > 0 {
		s.Where("id < ?", afterID)
	}
	s.b.WriteString(" ORDER BY id DESC LIMIT ?")
	return s.b.String(), append(s.args, limit)
}

// Exec runs query with args on q and returns how many rows it changed.
func Exec(ctx context.Context, q Querier, query string, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
