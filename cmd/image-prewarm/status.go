package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/app"
	"github.com/image-prewarm/image-prewarm/pkg/cli"
)

// runStatus is `image-prewarm status [--watch] [-o text|json]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image-prewarm status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "path to a kubeconfig")
	namespace := fs.String("namespace", "image-prewarm", "namespace of the prewarm ConfigMaps")
	watch := fs.Bool("watch", false, "redraw every second until interrupted")
	output := fs.String("o", "text", "output: text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "image-prewarm status: -o %q: want text or json\n", *output)
		return 2
	}
	cfg, err := app.RESTConfig(*kubeconfig)
	if err != nil {
		fmt.Fprintln(stderr, "image-prewarm status:", err)
		return 1
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "image-prewarm status:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *watch && *output == "text" {
		err = cli.Watch(ctx, client, *namespace, stdout, cli.IsTerminal(stdout), false, time.Second)
	} else {
		err = printOnce(ctx, client, *namespace, *output, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "image-prewarm status:", err)
		return 1
	}
	return 0
}

func printOnce(ctx context.Context, client kubernetes.Interface, namespace, output string, w io.Writer) error {
	statuses, err := cli.Load(ctx, client, namespace)
	if err != nil {
		return err
	}
	if output == "json" {
		return cli.RenderJSON(w, statuses)
	}
	cli.Render(w, statuses, time.Now(), 30)
	return nil
}
