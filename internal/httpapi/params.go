package httpapi

import (
	"net/http"
	"strconv"
	"time"
)

// PathID parses the path parameter name as a positive decimal int64 (no
// sign, no spaces); anything else is a 400 problem naming the parameter.
func PathID(r *http.Request, name string) (int64, error) {
	s := r.PathValue(name)
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ParamError(name, "must be a positive integer")
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, ParamError(name, "must be a positive integer below 2^63")
	}
	return id, nil
}

// Timestamp marshals as RFC 3339 in UTC with microseconds, always six
// digits, so that every time the API returns has one shape and the value
// returned on create equals the one a later read returns.
type Timestamp time.Time

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	// AppendFormat writes nine fractional digits before it cuts them to
	// six: leave room for them.
	b := make([]byte, 0, len(`"2006-01-02T15:04:05.000000000Z"`))
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	return append(b, '"'), nil
}
