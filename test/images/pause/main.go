// Command pause is the only process of the real node's sandbox ("pause") image,
// which these machines cannot download. It holds the pod's namespaces open by
// doing nothing until containerd stops the sandbox with SIGTERM (or a person with
// SIGINT), then exits 0. Unlike the upstream pause it does not reap zombies: with
// pod process namespaces unshared, nothing is reparented to it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	// As PID 1 of its namespace the process gets only signals it handles, so
	// SIGTERM must be caught explicitly.
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
