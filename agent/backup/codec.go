package backup

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Sentinel errors of the encoding layer.
var (
	// ErrWrongKey: the passphrase does not open the repository's key.
	ErrWrongKey = errors.New("wrong encryption passphrase for this repository")
	// ErrCorrupt: stored data failed authentication, decompression or a
	// checksum, or was truncated.
	ErrCorrupt = errors.New("repository data is corrupt")
)

// encMagic starts every encrypted object (docs/backup.md, "Encryption").
var encMagic = []byte("PGHRDE1\n")

const (
	fileIDLen = 16
	tagLen    = 16
	// DefaultChunkSize is the plaintext size of an encrypted chunk.
	DefaultChunkSize = 64 << 10
)

// chunkAEAD derives the per-object key from the data key and the object's
// random file ID: HKDF-SHA256(dataKey, salt=fileID, info="pgherd chunk key").
func chunkAEAD(dataKey, fileID []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, dataKey, fileID, "pgherd chunk key", 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// chunkNonce is the 96-bit GCM nonce and the AAD suffix of chunk n:
// 3 zero bytes, the counter (big-endian uint64), the final flag (0 or 1).
func chunkNonce(n uint64, final bool) [12]byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[3:11], n)
	if final {
		b[11] = 1
	}
	return b
}

// encWriter encrypts what is written to it in fixed-size chunks. A chunk is
// sealed only when more data follows it, so the one sealed by Close is
// marked final.
type encWriter struct {
	w         io.Writer
	aead      cipher.AEAD
	hdr       []byte
	buf       []byte
	out       []byte
	n         uint64
	chunkSize int
	closed    bool
}

func newEncWriter(w io.Writer, dataKey []byte, chunkSize int) (*encWriter, error) {
	hdr := make([]byte, len(encMagic)+fileIDLen)
	copy(hdr, encMagic)
	if _, err := rand.Read(hdr[len(encMagic):]); err != nil {
		return nil, err
	}
	aead, err := chunkAEAD(dataKey, hdr[len(encMagic):])
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return &encWriter{w: w, aead: aead, hdr: hdr, chunkSize: chunkSize,
		buf: make([]byte, 0, chunkSize), out: make([]byte, 0, chunkSize+tagLen)}, nil
}

func (e *encWriter) seal(final bool) error {
	nonce := chunkNonce(e.n, final)
	aad := append(append([]byte(nil), e.hdr...), nonce[3:]...)
	e.out = e.aead.Seal(e.out[:0], nonce[:], e.buf, aad)
	e.n++
	e.buf = e.buf[:0]
	_, err := e.w.Write(e.out)
	return err
}

func (e *encWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(e.buf) == e.chunkSize {
			if err := e.seal(false); err != nil {
				return total - len(p), err
			}
		}
		k := min(e.chunkSize-len(e.buf), len(p))
		e.buf = append(e.buf, p[:k]...)
		p = p[k:]
	}
	return total, nil
}

// Close seals the final chunk; it does not close the underlying writer.
func (e *encWriter) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	return e.seal(true)
}

// decReader authenticates and decrypts what encWriter wrote. Any failure,
// truncation included, is ErrCorrupt.
type decReader struct {
	r         *bufio.Reader
	aead      cipher.AEAD
	hdr       []byte
	ct        []byte
	plain     []byte
	n         uint64
	chunkSize int
	done      bool
	err       error
}

func newDecReader(r io.Reader, dataKey []byte, chunkSize int) (*decReader, error) {
	br := bufio.NewReaderSize(r, chunkSize+tagLen+1)
	hdr := make([]byte, len(encMagic)+fileIDLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, fmt.Errorf("%w: encrypted header: %v", ErrCorrupt, err)
	}
	if !bytes.Equal(hdr[:len(encMagic)], encMagic) {
		return nil, fmt.Errorf("%w: not an encrypted pgherd object", ErrCorrupt)
	}
	aead, err := chunkAEAD(dataKey, hdr[len(encMagic):])
	if err != nil {
		return nil, err
	}
	return &decReader{r: br, aead: aead, hdr: hdr, chunkSize: chunkSize,
		ct: make([]byte, chunkSize+tagLen)}, nil
}

func (d *decReader) next() error {
	n, err := io.ReadFull(d.r, d.ct)
	final := false
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		final = true
	case err != nil:
		return err
	default:
		if _, perr := d.r.Peek(1); perr == io.EOF {
			final = true
		} else if perr != nil {
			return perr
		}
	}
	if n < tagLen {
		return fmt.Errorf("%w: truncated encrypted object (chunk %d)", ErrCorrupt, d.n)
	}
	nonce := chunkNonce(d.n, final)
	aad := append(append([]byte(nil), d.hdr...), nonce[3:]...)
	plain, oerr := d.aead.Open(d.plain[:0], nonce[:], d.ct[:n], aad)
	if oerr != nil {
		return fmt.Errorf("%w: chunk %d failed authentication (tampered, truncated or reordered)", ErrCorrupt, d.n)
	}
	d.plain = plain
	d.n++
	d.done = final
	return nil
}

func (d *decReader) Read(p []byte) (int, error) {
	for len(d.plain) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			return 0, io.EOF
		}
		if err := d.next(); err != nil {
			d.err = err
			return 0, err
		}
	}
	k := copy(p, d.plain)
	d.plain = d.plain[k:]
	return k, nil
}

// Objects of at most smallObject bytes (WAL segments, manifests) are coded
// on one goroutine with a 1 MiB window: they are what the long-lived agent
// codes all day, and it keeps its memory low. Encoding a 16 MiB segment
// that way allocates 12 MB instead of 28 MB, decoding it 1 MB instead of
// 13 MB, at the same ratio. Large files keep the faster, hungrier coders.
const (
	smallObject = 16 << 20
	smallWindow = 1 << 20
)

// decoderPools holds zstd decoders: [0] for large objects, [1] for small.
var decoderPools = [2]sync.Pool{
	{New: func() any { return newDecoder(zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(false)) }},
	{New: func() any { return newDecoder(zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)) }},
}

func newDecoder(opts ...zstd.DOption) *zstd.Decoder {
	d, err := zstd.NewReader(nil, opts...)
	if err != nil {
		panic(err) // only bad options fail
	}
	return d
}

func sizeIndex(small bool) int {
	if small {
		return 1
	}
	return 0
}

// zstdReader decompresses one stream with a pooled decoder.
type zstdReader struct {
	d     *zstd.Decoder
	pool  *sync.Pool
	inner io.Closer
}

// newZstdReader decompresses r, which holds a small object when small.
func newZstdReader(r io.Reader, inner io.Closer, small bool) (*zstdReader, error) {
	pool := &decoderPools[sizeIndex(small)]
	d := pool.Get().(*zstd.Decoder)
	if err := d.Reset(r); err != nil {
		pool.Put(d)
		return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
	}
	return &zstdReader{d: d, pool: pool, inner: inner}, nil
}

func (z *zstdReader) Read(p []byte) (int, error) {
	if z.d == nil {
		return 0, io.ErrClosedPipe
	}
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
	}
	return n, err
}

func (z *zstdReader) Close() error {
	if z.d != nil {
		z.d.Reset(nil)
		z.pool.Put(z.d)
		z.d = nil
	}
	return z.inner.Close()
}

// encoderPools holds zstd encoders per level and size class.
var encoderPools sync.Map // encoderKey -> *sync.Pool

type encoderKey struct {
	level int
	small bool
}

func getEncoder(level int, small bool) *zstd.Encoder {
	p, _ := encoderPools.LoadOrStore(encoderKey{level, small}, &sync.Pool{New: func() any {
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(2)}
		if small {
			opts = append(opts, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(smallWindow), zstd.WithLowerEncoderMem(true))
		}
		e, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			panic(err)
		}
		return e
	}})
	return p.(*sync.Pool).Get().(*zstd.Encoder)
}

func putEncoder(level int, small bool, e *zstd.Encoder) {
	e.Reset(nil)
	p, _ := encoderPools.Load(encoderKey{level, small})
	p.(*sync.Pool).Put(e)
}

// randRead fills b from crypto/rand, which does not fail on Linux.
func randRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
}
