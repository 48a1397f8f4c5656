// Package schema reads the migration files that the engine's drivers
// embed, so that every driver orders and validates them the same way.
package schema

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one migration file: NNN_name.sql holds version NNN.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load returns the migrations in dir of fsys, oldest first. A file whose
// name does not start with a number and an underscore is an error.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	out := make([]Migration, 0, len(entries))
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with NNN_", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s have the same version", out[i-1].Name, out[i].Name)
		}
	}
	return out, nil
}

// Latest returns the newest version in ms, or 0 when there is none.
func Latest(ms []Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Embedded is the migrations a driver embeds: the files in Dir of FS.
type Embedded struct {
	FS  fs.FS
	Dir string
	// Driver names the driver ("postgres", "sqlite") in load errors.
	Driver string
}

// Migrations returns the migrations, oldest first.
func (e Embedded) Migrations() ([]Migration, error) {
	ms, err := Load(e.FS, e.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Driver, err)
	}
	return ms, nil
}

// Latest is the newest schema version of the migrations, or 0 when they
// do not load.
func (e Embedded) Latest() int {
	ms, err := e.Migrations()
	if err != nil {
		return 0
	}
	return Latest(ms)
}
