// Command kiln is a backend whose heavy work runs on a durable job engine.
//
// Run "kiln --help" for the commands. Every flag can also be set with an
// environment variable: KILN_ followed by the flag's name in upper case
// with dashes as underscores (--data-dir is KILN_DATA_DIR). A flag given on
// the command line wins over the environment. The command is package
// github.com/kilnhq/kiln/cli, which a Go program can run with job kinds
// of its own.
package main

import (
	"os"

	"github.com/kilnhq/kiln/cli"
)

func main() { os.Exit(cli.Main()) }
