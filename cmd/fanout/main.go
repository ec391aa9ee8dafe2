// Command fanout runs a job against many hosts. See README.md.
package main

import (
	"os"

	"github.com/fanout/fanout/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
