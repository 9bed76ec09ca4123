package images

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layer is a v1.Layer whose digests are computed once, when it is made, and whose
// bytes are produced again by an opener on every read. go-containerregistry's
// tarball layers would gzip random data that cannot shrink, and describe
// themselves with an empty annotation map that its own validate rejects.
type layer struct {
	compressed, uncompressed func() io.Reader
	digest, diffID           v1.Hash
	size                     int64
	mt                       types.MediaType
}

var _ v1.Layer = (*layer)(nil)

// newStreamLayer is a layer stored uncompressed (a …layer.v1.tar media type), whose
// bytes open regenerates: random data is incompressible, so gzip would cost CPU on
// every build, push and unpack for nothing, and nothing is held in memory.
func newStreamLayer(open func() io.Reader, mt types.MediaType) (*layer, error) {
	h, size, err := v1.SHA256(open())
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	return &layer{compressed: open, uncompressed: open, digest: h, diffID: h, size: size, mt: mt}, nil
}

// newGzipLayer is a gzip layer (types.OCILayer) of the tar archive raw, kept in
// memory: small files and the project's binaries. gzip output depends on the
// input only (no name or time in the header), so the digest is reproducible.
func newGzipLayer(raw []byte) (*layer, error) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	zipped := gz.Bytes()
	digest, size, err := v1.SHA256(bytes.NewReader(zipped))
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	diffID, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("diff ID: %w", err)
	}
	return &layer{
		compressed:   func() io.Reader { return bytes.NewReader(zipped) },
		uncompressed: func() io.Reader { return bytes.NewReader(raw) },
		digest:       digest, diffID: diffID, size: size, mt: types.OCILayer,
	}, nil
}

// Digest is the digest of the stored (compressed) bytes.
func (l *layer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the digest of the uncompressed tar archive.
func (l *layer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Compressed returns the stored bytes.
func (l *layer) Compressed() (io.ReadCloser, error) { return io.NopCloser(l.compressed()), nil }

// Uncompressed returns the tar archive.
func (l *layer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(l.uncompressed()), nil }

// Size is the stored size in bytes.
func (l *layer) Size() (int64, error) { return l.size, nil }

// MediaType is the layer's media type in the manifest.
func (l *layer) MediaType() (types.MediaType, error) { return l.mt, nil }
