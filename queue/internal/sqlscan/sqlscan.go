// Package sqlscan reads database/sql results the drivers share the shape
// of.
package sqlscan

import "database/sql"

// Column returns the single column of every row of rows, in order, and
// closes rows.
func Column[T any](rows *sql.Rows) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
