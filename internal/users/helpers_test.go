package users

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// env serves the users module over HTTP on a fresh database.
type env struct {
	*testutil.Server
	t     *testing.T
	db    *database.DB
	api   *httpapi.API
	clock *testutil.Clock
}

// start is the test clock's first reading: not in UTC and with
// nanoseconds, which the service must drop.
var start = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

func newEnv(t *testing.T, d *dbtest.Env) *env {
	t.Helper()
	c := testutil.NewClock(start)
	svc := testutil.Must(NewService(d.DB, Options{Now: c.Now}))(t)
	a := testutil.Must(httpapi.New(httpapi.Config{Jobs: d.Client(t, queue.Config{}, false), Modules: []httpapi.Module{NewHandler(svc)}}))(t)
	return &env{Server: testutil.Serve(t, a), t: t, db: d.DB, api: a, clock: c}
}

// user is a user as a client decodes it.
type user struct {
	ID        int64  `json:"id"`
	Email     string `json:"email"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// decodeUser checks that r is a user with status and returns it.
func decodeUser(t *testing.T, r testutil.Response, status int) user {
	t.Helper()
	return testutil.JSONOf[user](t, r, status)
}

// create creates a user and returns it.
func (e *env) create(email, name string) user {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "name": name})
	return decodeUser(e.t, e.Do("POST", "/api/v1/users", string(b)), http.StatusCreated)
}
