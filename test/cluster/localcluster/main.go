// Command localcluster starts and stops the local test control plane for people:
// `make cluster-up NODES=20` and `make cluster-down`. The cluster keeps running after
// `up` returns; `down` stops every process by the PIDs recorded in the state directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/image-prewarm/image-prewarm/test/cluster"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: localcluster up|down|dir [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", cluster.DefaultStateDir(), "state directory (kubeconfig, logs, PIDs)")
	nodes := fs.Int("nodes", 3, "fake nodes to create")
	realNodes := fs.Int("real-nodes", 0, "real nodes (kubelet + containerd) beside the fake ones; also starts the private registry")
	delay := fs.Duration("pull-delay", 2*time.Second, "minimum simulated pull time per pod")
	jitter := fs.Duration("pull-jitter", 3*time.Second, "extra random simulated pull time")
	failImages := fs.String("fail-images", "", "regexp: images that fail to pull (401)")
	failNodes := fs.String("fail-nodes", "", "regexp: nodes on which those images fail (default all)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		pulls := cluster.PullBehaviour{Delay: *delay, Jitter: *jitter, FailImagePattern: *failImages, FailNodePattern: *failNodes}
		return up(cluster.Options{Dir: *dir, Pulls: pulls, Detached: true, RealNodes: *realNodes}, *nodes)
	case "down":
		if err := cluster.StopRecorded(*dir); err != nil {
			return err
		}
		fmt.Println("cluster stopped; no process left")
		return nil
	case "dir":
		fmt.Println(*dir)
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func up(opts cluster.Options, nodes int) error {
	if err := cluster.StopRecorded(opts.Dir); err != nil { // a previous cluster in the same place
		return err
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	specs := cluster.FakeNodes("node", nodes)
	if err := c.CreateNodes(ctx, specs...); err != nil {
		return err
	}
	if err := c.WaitNodesReady(ctx, cluster.Names(specs)...); err != nil {
		return err
	}
	fmt.Printf("cluster up with %d fake and %d real Ready nodes\nkubeconfig: %s\nlogs: %s\n", nodes, opts.RealNodes, c.Kubeconfig, filepath.Join(opts.Dir, "logs"))
	if c.Registry == nil {
		return nil
	}
	envFile, err := writeRegistryEnv(c)
	if err != nil {
		return err
	}
	fmt.Printf("registry: %s (user, password, CA and our image in %s)\n", c.Registry.Host, envFile)
	return nil
}

// writeRegistryEnv writes the registry's address, CA, test user and the project's image
// as shell assignments, so a person can push an image and prewarm it on the real node.
func writeRegistryEnv(c *cluster.Cluster) (string, error) {
	file := filepath.Join(c.Dir, "registry.env")
	env := fmt.Sprintf("REGISTRY=%s\nREGISTRY_CA=%s\nREGISTRY_USER=%s\nREGISTRY_PASSWORD=%s\nPUBLIC_REGISTRY=%s\nIMAGE=%s\nKUBECONFIG=%s\n",
		c.Registry.Host, c.Registry.CAFile, cluster.RegistryUser, c.Registry.Password, c.PublicRegistry.Host, c.NoopImage, c.Kubeconfig)
	return file, os.WriteFile(file, []byte(env), 0o600)
}
