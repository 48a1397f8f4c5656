package users

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// BenchmarkGetUser measures GET /api/v1/users/{id} through the whole API
// handler (middleware included), without the network.
func BenchmarkGetUser(b *testing.B) {
	envs := map[string]func(testing.TB) *dbtest.Env{"sqlite": dbtest.SQLite}
	if os.Getenv("KILN_TEST_DATABASE_URL") != "" {
		envs["postgres"] = dbtest.Postgres
	}
	for name, open := range envs {
		b.Run(name, func(b *testing.B) {
			d := open(b)
			svc := testutil.Must(NewService(d.DB, Options{}))(b)
			u, err := svc.Create(context.Background(), CreateInput{Email: "ada@example.com", Name: "Ada Lovelace"})
			if err != nil {
				b.Fatal(err)
			}
			a := testutil.Must(httpapi.New(httpapi.Config{Jobs: d.Client(b, queue.Config{}, false), Modules: []httpapi.Module{NewHandler(svc)}}))(b)
			path := "/api/v1/users/" + strconv.FormatInt(u.ID, 10)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", path, nil)
				for pb.Next() {
					w := httptest.NewRecorder()
					a.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
						return
					}
				}
			})
		})
	}
}
