package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
)

// copyChangedBlocksRef is the block-at-a-time definition of
// copyChangedBlocks that the batched one must match byte for byte.
func copyChangedBlocksRef(w io.Writer, f io.Reader, bs int, priorBlocks int64, since LSN) int64 {
	rec := make([]byte, 4+bs)
	var size int64
	for blk := int64(0); ; blk++ {
		block := rec[4:]
		n, _ := io.ReadFull(f, block)
		if n == 0 {
			return size
		}
		size += int64(n)
		clear(block[n:])
		lsn := LSN(uint64(binary.LittleEndian.Uint32(block[0:4]))<<32 | uint64(binary.LittleEndian.Uint32(block[4:8])))
		if blk >= priorBlocks || lsn == 0 || lsn >= since || n < bs {
			binary.LittleEndian.PutUint32(rec[:4], uint32(blk))
			w.Write(rec)
		}
		if n < bs {
			return size
		}
	}
}

func TestCopyChangedBlocks(t *testing.T) {
	const bs = 64
	rng := rand.New(rand.NewPCG(1, 2))
	// Blocks with random LSNs around since, some zero.
	mk := func(blocks int, tail int) []byte {
		b := make([]byte, blocks*bs+tail)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		for i := 0; i*bs < len(b); i++ {
			if len(b)-i*bs < 8 {
				break
			}
			lsn := uint64(rng.IntN(2000))
			if i%7 == 0 {
				lsn = 0
			}
			binary.LittleEndian.PutUint32(b[i*bs:], uint32(lsn>>32))
			binary.LittleEndian.PutUint32(b[i*bs+4:], uint32(lsn))
		}
		return b
	}
	tests := []struct {
		name        string
		data        []byte
		priorBlocks int64
	}{
		{"empty", nil, 0},
		{"one block", mk(1, 0), 1},
		{"many blocks, some past the prior size", mk(100, 0), 80},
		{"exactly a batch", mk(32, 0), 32},
		{"batch and one", mk(33, 0), 33},
		{"short last block", mk(40, 20), 40},
		{"short only block", mk(0, 20), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want, got bytes.Buffer
			wantN := copyChangedBlocksRef(&want, bytes.NewReader(tt.data), bs, tt.priorBlocks, 1000)
			h := sha256.New()
			gotN, err := copyChangedBlocks(&got, bytes.NewReader(tt.data), h, bs, tt.priorBlocks, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if gotN != wantN || !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("size %d, want %d; output %d bytes, want %d (equal: %v)", gotN, wantN, got.Len(), want.Len(), bytes.Equal(got.Bytes(), want.Bytes()))
			}
			if sum := sha256.Sum256(tt.data); !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Fatal("hash of the whole file differs")
			}
		})
	}
}
