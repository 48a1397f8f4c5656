package httpapi

import (
	"net/http"
	"strconv"

	"github.com/kilnhq/kiln/internal/jsontime"
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

// Timestamp is a time as the API shows it; see [jsontime.Time].
type Timestamp = jsontime.Time
