// Command prewarm-noop is the command every prewarm pull container runs.
//
// The prewarm Job cannot rely on anything inside a target image: distroless and
// scratch images have no shell and no /bin/true. So the Job's first init container
// copies this static binary into a shared emptyDir ("install DIR"), and one init
// container per target image runs it from there with no arguments: the kubelet has
// to pull the image to start the container, and the binary exits 0 at once.
//
// It uses the standard library only so that it builds as a small static binary
// (CGO_ENABLED=0) that runs on any image of the same architecture.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// binaryName is the file name install writes; the Job runs DIR/binaryName.
const binaryName = "prewarm-noop"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run returns the exit code instead of exiting so that tests can call it.
func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		return 0
	}
	if args[0] != "install" || len(args) != 2 {
		fmt.Fprintf(stderr, "usage: %s [install DIR]\n", binaryName)
		return 1
	}
	if err := install(args[1]); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", binaryName, err)
		return 1
	}
	return 0
}

// install copies the running executable to dir/prewarm-noop with mode 0755.
// It writes a temporary file and renames it so that a reader never sees a
// half-written binary.
func install(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()

	tmp, err := os.CreateTemp(dir, "."+binaryName+"-*")
	if err != nil {
		return fmt.Errorf("create file in %s: %w", dir, err)
	}
	// Removing after a successful rename fails harmlessly; on any error it
	// leaves no temporary file behind.
	defer os.Remove(tmp.Name())

	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copy executable: %w", err)
	}
	// Chmod explicitly: CreateTemp creates with 0600, and the pull containers
	// may run as another user than this one.
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write executable: %w", err)
	}
	dst := filepath.Join(dir, binaryName)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
