// Command image-prewarm pre-pulls container images onto Kubernetes nodes. One binary:
// flags turn the controller (and later the webhook and task API) on or off.
//
//	image-prewarm [flags]     run (see --help)
//	image-prewarm status      show each prewarm run (--watch, -o json)
//	image-prewarm selftest    check an installed release (the chart's `helm test` pod)
//	image-prewarm version     print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Printf("image-prewarm %s (%s)\n", metrics.Version, runtime.Version())
		return 0
	}
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "selftest" {
		return runSelfTest(args[1:])
	}
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	cfg, err := app.Parse(args, os.Stderr)
	if errors.Is(err, app.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image-prewarm:", err)
		return 2
	}
	logger, err := logging.New(cfg.LogFormat, cfg.LogVerbosity, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image-prewarm:", err)
		return 2
	}
	restCfg, err := app.RESTConfig(cfg.Kubeconfig)
	if err != nil {
		logger.Error(err, "startup failed")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, restCfg, logger); err != nil {
		logger.Error(err, "stopped with an error")
		return 1
	}
	return 0
}

// runSelfTest checks an installed release from inside the cluster: exit 0 when every
// check passed, 1 when one failed, 2 for bad flags.
func runSelfTest(args []string) int {
	cfg, err := app.ParseSelfTest(args, os.Stderr)
	if errors.Is(err, app.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image-prewarm selftest:", err)
		return 2
	}
	restCfg, err := app.RESTConfig(cfg.Kubeconfig)
	if err == nil {
		var client kubernetes.Interface
		if client, err = kubernetes.NewForConfig(restCfg); err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = app.SelfTest(ctx, cfg, client, os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image-prewarm selftest:", err)
		return 1
	}
	return 0
}
