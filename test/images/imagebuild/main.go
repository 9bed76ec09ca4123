// Command imagebuild builds the image-prewarm image without Docker (`make image`): an
// OCI image index for linux/amd64 and linux/arm64, written as an OCI image layout
// directory and, with -push, pushed to a registry.
//
//	imagebuild [-o bin/image] [-version dev] [-platforms linux/amd64,linux/arm64]
//	           [-push 127.0.0.1:5000/image-prewarm:dev -ca ca.crt -username u -password-file f]
//
// The password is read from a file so that it never appears in a process list or a
// shell history. -o "" skips the layout (push only).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/image-prewarm/image-prewarm/test/images"
)

// options are the parsed flags.
type options struct {
	out, version, platforms string
	push, ca, user, pwFile  string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "imagebuild:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	platforms, err := parsePlatforms(o.platforms)
	if err != nil {
		return err
	}
	idx, err := images.Project(ctx, images.ProjectOptions{Version: o.version, Platforms: platforms, Log: stderr})
	if err != nil {
		return err
	}
	if err := describe(idx, stdout); err != nil {
		return err
	}
	if o.out != "" {
		if err := writeLayout(o.out, idx, o.version); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", o.out)
	}
	if o.push != "" {
		if err := push(ctx, o, idx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "pushed", o.push)
	}
	return nil
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "o", "bin/image", `OCI image layout directory to write ("" to skip)`)
	fs.StringVar(&o.version, "version", "dev", "version stamped into the image-prewarm binary")
	fs.StringVar(&o.platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	fs.StringVar(&o.push, "push", "", "reference to push the index to, e.g. 127.0.0.1:5000/image-prewarm:dev")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the registry's certificate (with -push)")
	fs.StringVar(&o.user, "username", "", "registry user (with -push)")
	fs.StringVar(&o.pwFile, "password-file", "", "file holding the registry password (with -username)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.out == "" && o.push == "" {
		return o, fmt.Errorf("nothing to do: -o is empty and -push is not set")
	}
	if o.push != "" && o.ca == "" {
		return o, fmt.Errorf("-push needs -ca")
	}
	if (o.user == "") != (o.pwFile == "") {
		return o, fmt.Errorf("-username and -password-file go together")
	}
	return o, nil
}

func parsePlatforms(list string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, s := range strings.Split(list, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("-platforms %q: want os/arch[,os/arch…]", list)
		}
		out = append(out, *p)
	}
	return out, nil
}

// describe prints the index digest and one line per platform.
func describe(idx v1.ImageIndex, w io.Writer) error {
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	fmt.Fprintln(w, "index", digest)
	for _, d := range m.Manifests {
		fmt.Fprintf(w, "  %s %s\n", d.Platform, d.Digest)
	}
	return nil
}

// writeLayout writes idx as the only entry of an OCI image layout at dir, tagged
// version (org.opencontainers.image.ref.name), so that skopeo or crane can read it.
// A previous layout there is replaced; any other non-empty directory is refused.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	if err := clearLayout(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	ref := map[string]string{"org.opencontainers.image.ref.name": version}
	if err := p.AppendIndex(idx, layout.WithAnnotations(ref)); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}

func clearLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-o %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("-o %s: not empty and not an OCI image layout; refusing to replace it", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("-o %s: %w", dir, err)
	}
	return nil
}

func push(ctx context.Context, o options, idx v1.ImageIndex) error {
	ref, err := name.ParseReference(o.push, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("-push %s: %w", o.push, err)
	}
	reg := images.Registry{Host: ref.Context().RegistryStr(), CAFile: o.ca, Username: o.user}
	if o.pwFile != "" {
		pw, err := os.ReadFile(o.pwFile)
		if err != nil {
			return fmt.Errorf("-password-file: %w", err)
		}
		reg.Password = strings.TrimRight(string(pw), "\r\n")
	}
	return images.Push(ctx, o.push, idx, reg)
}
