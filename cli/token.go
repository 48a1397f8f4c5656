package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/tokens"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens",
		Long: `Create, list and revoke the tokens that authenticate calls to the HTTP API
(Authorization: Bearer <token>).

A token has a scope: read may read, write may also create and act on jobs,
admin may also delete and pause or resume queues. The token itself is
printed once, when it is created; the database keeps only a hash of its
secret. A revoked token stops working at once in this process and within
seconds in a running kiln serve.`,
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

// withTokens opens the database (migrating it) and runs fn with its
// token service. With mustExist, a missing embedded database is an error
// rather than a new empty one.
func withTokens(ctx context.Context, g *globals, mustExist bool, fn func(*tokens.Service) error) error {
	return withStore(ctx, g, mustExist, g.logger, func(s *store, log *slog.Logger) error {
		svc := tokens.NewService(tokens.NewStore(s.app), tokens.Options{Logger: log})
		defer svc.Close()
		return fn(svc)
	})
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var (
		scope string
		name  string
		ttl   lifetime
	)
	cmd := &cobra.Command{
		Use:   "create --scope read|write|admin",
		Short: "Create a token and print it",
		Long: `Create a token and print it alone on standard output; what it is and when
it expires go to standard error. The token cannot be shown again: store it
now. A fresh install needs one before it can call the API, so this command
creates and migrates the database if needed.`,
		Example: `  TOKEN=$(kiln token create --scope admin --name ops)
  kiln token create --scope read --name dashboard --ttl 90d
  curl -H "Authorization: Bearer $TOKEN" http://localhost:8080/api/v1/jobs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return usagef("--scope is required: read, write or admin")
			}
			sc, err := httpapi.ParseScope(scope)
			if err != nil {
				return usagef("--scope: %v", err)
			}
			if ttl < 0 {
				return usagef("--ttl must not be negative (0, the default, means the token never expires)")
			}
			if err := tokens.Validate(name, sc, time.Duration(ttl)); err != nil {
				return usageError{err}
			}
			return withTokens(cmd.Context(), g, false, func(svc *tokens.Service) error {
				tok, info, err := svc.Create(cmd.Context(), name, sc, time.Duration(ttl))
				if err != nil {
					return err
				}
				expires := "never expires"
				if !info.ExpiresAt.IsZero() {
					expires = "expires " + info.ExpiresAt.Local().Format(time.DateTime)
				}
				fmt.Fprintf(g.stderr, "created token %s (scope %s, name %s, %s)\n", info.ID, info.Scope, displayName(info.Name), expires)
				fmt.Fprintln(g.stderr, "store it now: it is shown only this once. Send it as \"Authorization: Bearer <token>\".")
				_, err = fmt.Fprintln(g.stdout, tok)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&scope, "scope", "", "what the token may do: read, write or admin (required)")
	fl.StringVar(&name, "name", "", "a label shown in listings and logs")
	fl.Var(&ttl, "ttl", "lifetime, e.g. 12h or 90d (default: never expires)")
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens, newest first (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withTokens(cmd.Context(), g, true, func(svc *tokens.Service) error {
				list, err := svc.List(cmd.Context())
				if err != nil {
					return err
				}
				now := time.Now()
				if asJSON {
					out := make([]tokenJSON, len(list))
					for i, t := range list {
						out[i] = toTokenJSON(t, now)
					}
					return writeJSON(g.stdout, out)
				}
				return printTokens(g.stdout, list, now)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Long: `Revoke the token with the given id, as kiln token list shows it (the whole
token is accepted too). Revoking a revoked token succeeds and changes
nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if tid, _, ok := tokens.Parse(id); ok {
				id = tid
			}
			if !tokens.ValidID(id) {
				// The argument is not echoed: it may be part of a secret.
				return usagef("want a token id: %d lower-case hex characters, as kiln token list shows", tokens.IDLen)
			}
			return withTokens(cmd.Context(), g, true, func(svc *tokens.Service) error {
				err := svc.Revoke(cmd.Context(), id)
				if errors.Is(err, tokens.ErrNotFound) {
					return fmt.Errorf("token %s not found", id)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "revoked token %s\n", id)
				return nil
			})
		},
	}
}

// tokenJSON is a token as kiln token list --json prints it. Times that
// are not set are null.
type tokenJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	State      string     `json:"state"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func toTokenJSON(t tokens.Token, now time.Time) tokenJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return tokenJSON{
		ID: t.ID, Name: t.Name, Scope: t.Scope.String(), State: t.State(now), CreatedAt: t.CreatedAt,
		ExpiresAt: opt(t.ExpiresAt), RevokedAt: opt(t.RevokedAt), LastUsedAt: opt(t.LastUsedAt),
	}
}

func printTokens(w io.Writer, list []tokens.Token, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tSTATE\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
	when := func(t time.Time, unset string) string {
		if t.IsZero() {
			return unset
		}
		return t.Local().Format(time.DateTime)
	}
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, displayName(t.Name), t.Scope, t.State(now),
			when(t.CreatedAt, "-"), when(t.ExpiresAt, "never"), when(t.RevokedAt, "-"), when(t.LastUsedAt, "never"))
	}
	return tw.Flush()
}

// displayName quotes a token's name for a table or a message.
func displayName(name string) string {
	if name == "" {
		return "-"
	}
	return strconv.Quote(name)
}

// lifetime is a flag value that takes Go durations ("12h", "90m") and
// whole days ("90d").
type lifetime time.Duration

func (l *lifetime) String() string {
	if *l == 0 {
		return "0"
	}
	return time.Duration(*l).String()
}

func (l *lifetime) Type() string { return "duration" }

func (l *lifetime) Set(s string) error {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(maxLifetime/(24*time.Hour)) {
			return fmt.Errorf("%q: want whole days between 0 and %d, or a duration such as 12h", s, maxLifetime/(24*time.Hour))
		}
		*l = lifetime(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want a duration such as 12h or 90d", s)
	}
	*l = lifetime(d)
	return nil
}

// maxLifetime keeps day counts far from overflowing a time.Duration.
const maxLifetime = 100 * 365 * 24 * time.Hour
