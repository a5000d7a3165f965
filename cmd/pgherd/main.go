// Command pgherd converges highly available PostgreSQL clusters from an HCL
// spec, and runs on each database host as the HA and backup agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgherd/pgherd/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, stop, os.Args[1:], cli.Env{
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Environ: os.Environ(),
	})
	stop()
	os.Exit(code)
}
