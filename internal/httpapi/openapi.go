package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 document of every route in [API.routes].
// It is written by hand, and TestOpenAPIMatchesRoutes keeps the two in
// step.
//
//go:embed openapi.json
var openAPIDoc []byte

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(openAPIDoc); err != nil {
		Logger(r.Context()).Debug("write openapi", "err", err)
	}
}
