package monitor

import (
	_ "embed"
	"net/http"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Module returns the API module serving GET /api/v1/runtime: the latest
// [Snapshot] as JSON, for the dashboard. It needs the read scope.
func (m *Monitor) Module() httpapi.Module { return module{m: m} }

// module is the runtime API module.
type module struct{ m *Monitor }

// Routes implements [httpapi.Module].
func (h module) Routes() []httpapi.Route {
	return []httpapi.Route{{Pattern: "GET " + httpapi.Prefix + "/runtime", Handler: h.get}}
}

// OpenAPI implements [httpapi.Module].
func (module) OpenAPI() []byte { return openAPI }

// get serves the latest snapshot; 503 before the first sample.
func (h module) get(w http.ResponseWriter, r *http.Request) {
	for name := range r.URL.Query() {
		httpapi.WriteError(w, r, httpapi.ParamError(name, "unknown parameter (this route takes none)"))
		return
	}
	s := h.m.Snapshot()
	if s.SampledAt.IsZero() {
		httpapi.WriteError(w, r, &httpapi.Error{Code: httpapi.CodeUnavailable, Message: "the runtime monitor has not taken a sample yet; try again shortly", RetryAfter: h.m.interval})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, r, http.StatusOK, s)
}
