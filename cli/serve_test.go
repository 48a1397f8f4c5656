package cli

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/queue"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"": 0, "1": 1, "512MiB": 512 << 20, "2GiB": 2 << 30, " 3 KiB ": 3 << 10, "10B": 10, "1TiB": 1 << 40,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "1.5GiB", "GiB", "12MB", "lots", "9999999999TiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

func TestDBFlagHint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		g    globals
		want string
	}{
		{globals{dataDir: "./kiln-data"}, ""},
		{globals{dataDir: "/srv/kiln"}, " --data-dir /srv/kiln"},
		{globals{db: "/tmp/x.db", dataDir: "./kiln-data"}, " --db /tmp/x.db"},
		{globals{db: "postgres://u:secret@h/db", dataDir: "./kiln-data"}, " --db 'postgres://u:xxxxx@h/db'"},
	} {
		if got := dbFlagHint(&tc.g); got != tc.want {
			t.Errorf("dbFlagHint(%+v) = %q, want %q", tc.g, got, tc.want)
		}
	}
}

// TestDefaultQueuesCoverBuiltInKinds: with the default --queues every
// built-in kind's queue is worked, and a kind on a queue left out is
// named.
func TestDefaultQueuesCoverBuiltInKinds(t *testing.T) {
	t.Parallel()
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, app.NewBase(dbtest.SQLite(t).DB, nil, nil, nil)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"image.thumbnail", "webhook.deliver", "video.thumbnail", "report.generate"} {
		if _, ok := w.Kind(k); !ok {
			t.Errorf("built-in kind %s is not registered", k)
		}
	}
	for _, procs := range []int{1, 2, 16} {
		qs, err := parseQueues(defaultQueues(procs))
		if err != nil {
			t.Fatal(err)
		}
		if missing := unworkedQueues(w, qs); len(missing) != 0 {
			t.Errorf("%d CPUs: default queues leave out %v", procs, missing)
		}
		if qs["images"].MaxWorkers != procs || qs["media"].MaxWorkers != max(1, procs/2) {
			t.Errorf("%d CPUs: %v", procs, qs)
		}
	}
	qs, _ := parseQueues("default=10")
	w.HandleFunc("x.own", func(context.Context, *queue.Job) error { return nil }, queue.WithQueue("own"))
	if got := unworkedQueues(w, qs); !slices.Contains(got, "x.own (queue own)") {
		t.Errorf("unworked queues %v, want x.own (queue own) among them", got)
	}
}

// TestImageDecodingDefault: serve decodes images on half the CPUs by
// default (the images package's default), worker on all of them, and an
// explicit --image-max-decoding wins in both.
func TestImageDecodingDefault(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		args    []string
		serving bool
		want    int
	}{
		{nil, true, 0},
		{nil, false, runtime.GOMAXPROCS(0)},
		{[]string{"--image-max-decoding", "3"}, true, 3},
		{[]string{"--image-max-decoding", "3"}, false, 3},
	} {
		var k kindFlags
		cmd := &cobra.Command{Use: "x"}
		k.register(cmd)
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := k.kinds(nil, log, tc.serving)
		if err != nil {
			t.Fatal(err)
		}
		if got.Images.MaxDecoding != tc.want {
			t.Errorf("%v serving=%v: MaxDecoding %d, want %d", tc.args, tc.serving, got.Images.MaxDecoding, tc.want)
		}
		if got.Webhooks.Breakers == nil || got.Webhooks.WrapTransport == nil {
			t.Errorf("%v: webhooks get no breakers or transport wrapper", tc.args)
		}
	}
}

// TestWebhookAllowNetworks: --webhook-allow-networks reaches the
// webhooks' options, for registration and delivery alike; by default
// no range is allowed.
func TestWebhookAllowNetworks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "[]"},
		{[]string{"--webhook-allow-networks", "10.0.0.0/8, 127.0.0.0/8,fd00::/8"}, "[10.0.0.0/8 127.0.0.0/8 fd00::/8]"},
	} {
		var k kindFlags
		cmd := &cobra.Command{Use: "x"}
		k.register(cmd)
		if err := cmd.Flags().Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := k.check()
		if err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(got.Webhooks.AllowNetworks); s != tc.want {
			t.Errorf("%v: allowed %s, want %s", tc.args, s, tc.want)
		}
	}
}
