package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// openAPIDoc is the OpenAPI 3.1 document of the routes in [API.routes],
// written by hand; modules' fragments are merged into it. Tests keep the
// document and the router in step.
//
//go:embed openapi.json
var openAPIDoc []byte

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(a.doc); err != nil {
		Logger(r.Context()).Debug("write openapi", "err", err)
	}
}

// DocMismatches compares the registered routes under [Prefix] with the
// OpenAPI document and describes every difference: a route the document
// lacks, a documented operation that is not a route, an operation without
// responses, with an undeclared path parameter, or without a status the
// middleware around its route may answer (authentication, body limit,
// idempotency), and every $ref that names nothing in the document. Tests
// call it on the fully assembled API; it returns nil when the two agree.
func (a *API) DocMismatches() []string {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(a.doc, &doc); err != nil {
		return []string{"decode document: " + err.Error()}
	}
	var out []string
	documented := map[string]map[string]json.RawMessage{} // pattern → responses
	for path, ops := range doc.Paths {
		for method, op := range ops {
			var o struct {
				Parameters []struct {
					Name string `json:"name"`
					In   string `json:"in"`
				} `json:"parameters"`
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || len(o.Responses) == 0 {
				out = append(out, fmt.Sprintf("%s %s has no responses", method, path))
			}
			documented[strings.ToUpper(method)+" "+path] = o.Responses
			for seg := range strings.SplitSeq(path, "/") {
				name, ok := strings.CutPrefix(seg, "{")
				if !ok {
					continue
				}
				name = strings.TrimSuffix(name, "}")
				if !slices.ContainsFunc(o.Parameters, func(p struct {
					Name string `json:"name"`
					In   string `json:"in"`
				}) bool {
					return p.Name == name && p.In == "path"
				}) {
					out = append(out, fmt.Sprintf("%s %s does not declare path parameter %s", method, path, name))
				}
			}
		}
	}
	registered := map[string]bool{}
	for _, p := range a.patterns {
		if _, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, Prefix+"/") {
			registered[p] = true
			resp, ok := documented[p]
			if !ok {
				out = append(out, "route "+p+" is not in the OpenAPI document")
				continue
			}
			for _, status := range a.answers[p] {
				if _, ok := resp[status]; !ok && len(resp) > 0 {
					out = append(out, fmt.Sprintf("%s does not document %s, which the middleware around it may answer", p, status))
				}
			}
		}
	}
	for p := range documented {
		if !registered[p] {
			out = append(out, "the OpenAPI document has "+p+", which is not a route")
		}
	}
	var whole map[string]any
	if err := json.Unmarshal(a.doc, &whole); err != nil {
		return append(out, "decode document: "+err.Error())
	}
	for _, ref := range refs(whole) {
		if !resolves(whole, ref) {
			out = append(out, "$ref "+ref+" names nothing in the document")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// refs returns every $ref in v, a decoded JSON value.
func refs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				out = append(out, s)
			}
			out = append(out, refs(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, refs(x)...)
		}
	}
	return out
}

// resolves reports whether ref, a local $ref ("#/components/..."), names
// something in doc.
func resolves(doc map[string]any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for part := range strings.SplitSeq(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
