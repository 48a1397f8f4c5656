package users

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	// maxSearch bounds the q filter: no longer string can be in a name or
	// an email.
	maxSearch = MaxEmail
)

// Handler serves the users routes; it implements httpapi.Module.
type Handler struct {
	svc *Service
}

// NewHandler returns the HTTP handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

var _ httpapi.Module = (*Handler)(nil)

// Routes returns the users routes.
func (h *Handler) Routes() []httpapi.Route {
	const p = httpapi.Prefix + "/users"
	return []httpapi.Route{
		{Pattern: "POST " + p, Handler: httpapi.Create(decodeCreate, h.svc.Create, toResponse, userPath)},
		{Pattern: "GET " + p, Handler: h.list},
		// The hot path: one primary-key SELECT on the read handle and one
		// encoding.
		{Pattern: "GET " + p + "/{id}", Handler: httpapi.Show(h.svc.Get, toResponse)},
		{Pattern: "PATCH " + p + "/{id}", Handler: httpapi.Change(decodePatch, h.svc.Update, toResponse)},
		{Pattern: "DELETE " + p + "/{id}", Handler: httpapi.Remove(h.svc.Delete)},
	}
}

// OpenAPI returns the document fragment of the users routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// userPath is the API path of u.
func userPath(u User) string { return httpapi.Prefix + "/users/" + strconv.FormatInt(u.ID, 10) }

// userResponse is a user as the API shows it.
type userResponse struct {
	ID        int64             `json:"id"`
	Email     string            `json:"email"`
	Name      string            `json:"name"`
	CreatedAt httpapi.Timestamp `json:"created_at"`
	UpdatedAt httpapi.Timestamp `json:"updated_at"`
}

func toResponse(u User) userResponse {
	return userResponse{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: httpapi.Timestamp(u.CreatedAt), UpdatedAt: httpapi.Timestamp(u.UpdatedAt)}
}

// createRequest is the body of POST /api/v1/users.
type createRequest struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// patchRequest is the body of PATCH /api/v1/users/{id}: present fields
// change. null asks to remove a field, which a required field refuses.
type patchRequest struct {
	Email httpapi.Optional `json:"email"`
	Name  httpapi.Optional `json:"name"`
}

// decodeCreate and decodePatch read the bodies of a create and a patch
// request.
var (
	decodeCreate = httpapi.Body(func(r createRequest) CreateInput { return CreateInput(r) })
	decodePatch  = httpapi.Body(func(r patchRequest) PatchInput { return PatchInput{Email: r.Email.Ptr(), Name: r.Name.Ptr()} })
)

// parseList parses the query string of GET /api/v1/users by the rules
// of httpapi.ParseList.
func parseList(rawQuery string) (ListParams, error) {
	var p ListParams
	text := func(v string) error {
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return errors.New("must be UTF-8 text without control characters")
		}
		return nil
	}
	page, err := httpapi.ParseList(rawQuery, httpapi.ListSpec{DefaultLimit: defaultListLimit, MaxLimit: maxListLimit, Filters: []httpapi.Filter{
		{Name: "email", Parse: func(v string) error {
			if err := text(v); err != nil {
				return err
			}
			if p.Email = strings.ToLower(strings.TrimSpace(v)); p.Email == "" {
				return errors.New("must not be empty")
			}
			return nil
		}},
		{Name: "q", Parse: func(v string) error {
			if err := text(v); err != nil {
				return err
			}
			if utf8.RuneCountInString(v) > maxSearch {
				return fmt.Errorf("must be at most %d characters", maxSearch)
			}
			p.Search = v
			return nil
		}},
	}})
	p.Limit, p.AfterID = page.Limit, page.After
	return p, err
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	var us []User
	if err == nil {
		us, err = h.svc.List(r.Context(), p)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, httpapi.NewList("users", us, p.Limit, toResponse, func(u User) int64 { return u.ID }))
}
