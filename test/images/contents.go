package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Entry is one file system entry of an image, as a container sees it.
type Entry struct {
	// Path is absolute and clean, e.g. /image-prewarm.
	Path string
	// Mode holds the type bit (fs.ModeDir, …) and the permission bits.
	Mode     fs.FileMode
	UID, GID int
	Size     int64
}

// String is "path mode uid:gid", the form test failures print.
func (e Entry) String() string {
	return fmt.Sprintf("%s %s %d:%d", e.Path, e.Mode, e.UID, e.GID)
}

// Contents lists img's flattened file system, sorted by path, so that tests can
// compare an image with what they expect (the Dockerfile, for the project image)
// without a container runtime.
func Contents(img v1.Image) ([]Entry, error) {
	var entries []Entry
	err := walk(img, func(hdr *tar.Header, _ io.Reader) error {
		entries = append(entries, Entry{
			Path: path.Clean("/" + hdr.Name), Mode: hdr.FileInfo().Mode(),
			UID: hdr.Uid, GID: hdr.Gid, Size: hdr.Size,
		})
		return nil
	})
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries, err
}

// ReadFile returns the content of the file at path (absolute) in img.
func ReadFile(img v1.Image, file string) ([]byte, error) {
	var data []byte
	found := errors.New("found")
	err := walk(img, func(hdr *tar.Header, r io.Reader) error {
		if path.Clean("/"+hdr.Name) != file {
			return nil
		}
		var err error
		if data, err = io.ReadAll(r); err != nil {
			return err
		}
		return found
	})
	if errors.Is(err, found) {
		return data, nil
	}
	if err == nil {
		err = fmt.Errorf("no file %s in the image", file)
	}
	return nil, err
}

// walk calls fn for every entry of img's flattened file system.
func walk(img v1.Image, fn func(*tar.Header, io.Reader) error) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read image file system: %w", err)
		}
		if err := fn(hdr, tr); err != nil {
			return err
		}
	}
}
