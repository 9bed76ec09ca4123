package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const mib = 1 << 20

// maxRandomLayers is how many layers Large and Artifact spread their data over: real
// images have several layers, and containerd fetches them in parallel, so a pull
// here does too.
const maxRandomLayers = 4

// randomTarLayers returns sizeMiB of random data in at most maxRandomLayers tar
// layers of whole MiB (the remainder goes to the last), layer i holding one file
// named name(i). Its bytes come from a ChaCha8 stream seeded with (kind, seed, i):
// deterministic, yet incompressible, and never held in memory: each read
// regenerates them.
func randomTarLayers(kind string, sizeMiB int, seed uint64, mt types.MediaType, name func(int) string) ([]v1.Layer, error) {
	if sizeMiB < 1 {
		return nil, fmt.Errorf("%s: size %d MiB: want at least 1", kind, sizeMiB)
	}
	n := min(sizeMiB, maxRandomLayers)
	layers := make([]v1.Layer, n)
	for i := range n {
		size := sizeMiB / n
		if i == n-1 {
			size += sizeMiB % n
		}
		l, err := newStreamLayer(randomTar(kind, seed, i, name(i), int64(size)*mib), mt)
		if err != nil {
			return nil, fmt.Errorf("%s layer %d: %w", kind, i, err)
		}
		layers[i] = l
	}
	return layers, nil
}

// randomTar returns an opener of a tar archive with one file of size random bytes.
// The archive is assembled from its header, the data and the end-of-archive blocks,
// without a goroutine or a buffer of the data (size is a multiple of the tar block,
// so no padding follows the data).
func randomTar(kind string, seed uint64, layer int, name string, size int64) func() io.Reader {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	// WriteHeader writes the header block at once; into a bytes.Buffer it cannot
	// fail. The writer is not closed: the data and the end blocks are added below.
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: epoch})
	header := hdr.Bytes()
	key := sha256.Sum256(binary.BigEndian.AppendUint64(
		binary.BigEndian.AppendUint64([]byte("image-prewarm/"+kind+"/"), seed), uint64(layer)))
	return func() io.Reader {
		return io.MultiReader(bytes.NewReader(header),
			io.LimitReader(rand.NewChaCha8(key), size),
			bytes.NewReader(make([]byte, 2*512)))
	}
}
