package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// applyDeltaFile is the reference for mergeReader: the base written to a
// file, each record written at its block's offset, then cut to size.
func applyDeltaFile(t *testing.T, base []byte, recs []deltaRec, bs int, size int64) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, base, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := f.WriteAt(r.page, int64(r.blk)*int64(bs)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type deltaRec struct {
	blk  uint32
	page []byte
}

func encodeDelta(recs []deltaRec) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		binary.Write(&b, binary.LittleEndian, r.blk)
		b.Write(r.page)
	}
	return b.Bytes()
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func page(bs int, c byte) []byte { return bytes.Repeat([]byte{c}, bs) }

func newMerge(base, delta []byte, deltaSum string, bs int, size int64) *mergeReader {
	br := io.NopCloser(bytes.NewReader(base))
	dr := &checkReader{rc: io.NopCloser(bytes.NewReader(delta)), h: sha256.New(), size: -1, sum: deltaSum, what: "delta"}
	return &mergeReader{base: br, delta: dr, dr: bufioReader(dr), bs: bs, size: size, path: "f",
		block: make([]byte, bs), rec: make([]byte, 4+bs), next: -1}
}

func TestMergeReader(t *testing.T) {
	const bs = 16
	base := append(append(page(bs, 'a'), page(bs, 'b')...), page(bs, 'c')...)
	tests := []struct {
		name string
		recs []deltaRec
		size int64
	}{
		{"no change", nil, 3 * bs},
		{"middle block", []deltaRec{{1, page(bs, 'X')}}, 3 * bs},
		{"first and last", []deltaRec{{0, page(bs, 'X')}, {2, page(bs, 'Y')}}, 3 * bs},
		{"grown", []deltaRec{{1, page(bs, 'X')}, {3, page(bs, 'N')}, {4, page(bs, 'M')}}, 5 * bs},
		{"grown with a hole", []deltaRec{{4, page(bs, 'M')}}, 5 * bs},
		{"shrunk", nil, bs},
		{"shrunk, record past the end", []deltaRec{{0, page(bs, 'X')}, {2, page(bs, 'Y')}}, bs},
		{"short last block", []deltaRec{{3, page(bs, 'Z')}}, 3*bs + 5},
		{"empty", []deltaRec{{0, page(bs, 'X')}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := applyDeltaFile(t, base, tt.recs, bs, tt.size)
			delta := encodeDelta(tt.recs)
			for _, chunk := range []int{1, 7, bs, 1000} { // reader buffer sizes
				m := newMerge(base, delta, sum(delta), bs, tt.size)
				got, err := readChunks(m, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, want)
				}
			}
		})
	}
}

func TestMergeReaderCorrupt(t *testing.T) {
	const bs = 16
	base := append(page(bs, 'a'), page(bs, 'b')...)
	good := encodeDelta([]deltaRec{{1, page(bs, 'X')}})
	tests := []struct {
		name  string
		delta []byte
		dSum  string
		size  int64
	}{
		{"delta checksum", good, sum([]byte("other")), 2 * bs},
		{"truncated record", good[:10], sum(good[:10]), 2 * bs},
		{"out of order", encodeDelta([]deltaRec{{1, page(bs, 'X')}, {0, page(bs, 'Y')}}), "", 2 * bs},
		{"twice", encodeDelta([]deltaRec{{1, page(bs, 'X')}, {1, page(bs, 'Y')}}), "", 2 * bs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dSum == "" {
				tt.dSum = sum(tt.delta)
			}
			_, err := io.ReadAll(newMerge(base, tt.delta, tt.dSum, bs, tt.size))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func readChunks(r io.Reader, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := r.Read(buf)
		out = append(out, buf[:k]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64) }
