// Package jsontime is the one shape of the times kiln sends as JSON, in
// API answers and webhook events alike.
package jsontime

import "time"

// Time marshals as RFC 3339 in UTC with microseconds, always six digits,
// so that every time has one shape and the value returned on create
// equals the one a later read returns.
type Time time.Time

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	// AppendFormat writes nine fractional digits before it cuts them to
	// six: leave room for them.
	b := make([]byte, 0, len(`"2006-01-02T15:04:05.000000000Z"`))
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	return append(b, '"'), nil
}
