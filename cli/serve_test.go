package cli

import (
	"testing"
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
