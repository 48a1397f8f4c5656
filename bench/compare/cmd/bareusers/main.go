// Command bareusers is the smallest honest baseline for kiln's
// GET /api/v1/users/{id}: net/http's ServeMux and a pgxpool.Pool, no
// framework, no middleware, no authentication. It runs the same query
// against the same users table and answers with the same JSON shape
// ({id, email, name, created_at, updated_at}), 404 when no row matches.
//
//	bareusers --addr 127.0.0.1:8081 --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --schema users_bench
//
// The schema can also come from the URL (options=-csearch_path%3Dname).
// The pool holds 16 connections, kiln's default, unless the URL's
// pool_max_conns or --pool says otherwise.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultPoolSize matches kiln's PostgreSQL pool (pgdriver.DefaultMaxConns).
const defaultPoolSize = 16

const userQuery = `SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1`

// user is one row of the users table as kiln's API shows it.
type user struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// querier is what the handler needs from the pool.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to serve HTTP on")
	dbURL := flag.String("db", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL (pgx syntax; pool_max_conns and options=-csearch_path%3D... are honoured)")
	schema := flag.String("schema", "", "schema holding the users table (sets search_path; empty keeps the URL's or the server's)")
	pool := flag.Int("pool", 0, "pool size (0: the URL's pool_max_conns, else 16)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *dbURL, *schema, *pool); err != nil {
		fmt.Fprintln(os.Stderr, "bareusers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, dbURL, schema string, poolSize int) error {
	cfg, err := poolConfig(dbURL, schema, poolSize)
	if err != nil {
		return err
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	defer p.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = p.Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/users/{id}", userHandler(p))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	fmt.Printf("bareusers listening on http://%s (pool %d)\n", ln.Addr(), cfg.MaxConns)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// poolConfig parses dbURL and applies the schema and the pool size.
func poolConfig(dbURL, schema string, poolSize int) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}
	switch {
	case poolSize > 0:
		cfg.MaxConns = int32(poolSize)
	case !strings.Contains(dbURL, "pool_max_conns"):
		cfg.MaxConns = defaultPoolSize
	}
	if schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	return cfg, nil
}

// userHandler answers GET /api/v1/users/{id}.
func userHandler(db querier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id < 1 {
			writeError(w, http.StatusBadRequest, "id must be a positive integer")
			return
		}
		var u user
		err = db.QueryRow(r.Context(), userQuery, id).Scan(&u.ID, &u.Email, &u.Name, &u.CreatedAt, &u.UpdatedAt)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			writeError(w, http.StatusNotFound, "no such user")
			return
		case err != nil:
			log.Printf("GET user %d: %v", id, err)
			writeError(w, http.StatusInternalServerError, "internal error")
			return
		}
		u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(u); err != nil {
			log.Printf("GET user %d: write: %v", id, err)
		}
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
