package schema

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	good := fstest.MapFS{
		"m/010_ten.sql": {Data: []byte("ten")},
		"m/002_two.sql": {Data: []byte("two")},
		"m/001_one.sql": {Data: []byte("one")},
	}
	ms, err := Load(good, "m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+"="+m.SQL)
	}
	if want := "001_one.sql=one 002_two.sql=two 010_ten.sql=ten"; strings.Join(got, " ") != want {
		t.Errorf("Load = %v, want %s", got, want)
	}
	if Latest(ms) != 10 || Latest(nil) != 0 {
		t.Errorf("Latest = %d (nil: %d), want 10 (0)", Latest(ms), Latest(nil))
	}
	for name, fsys := range map[string]fstest.MapFS{
		"no number":         {"m/init.sql": {}},
		"no underscore":     {"m/001.sql": {}},
		"zero":              {"m/000_zero.sql": {}},
		"duplicate version": {"m/001_a.sql": {}, "m/1_b.sql": {}},
	} {
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
	if _, err := Load(good, "missing"); err == nil {
		t.Error("Load of a missing directory succeeded")
	}
}
