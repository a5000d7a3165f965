package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// openFile returns the content of f: its object decoded or, for a block
// delta, its base version (recursively) with the stored blocks laid over
// it and cut to f.Size, as one stream, so that restore writes each file
// once. The caller checks the whole file's SHA-256; a delta's stored
// SHA-256 is checked here, at its end. Errors in the data are ErrCorrupt.
func (s *Store) openFile(ctx context.Context, mc *manifestCache, f ManifestFile) (io.ReadCloser, error) {
	if f.DeltaBase == "" {
		if f.Key == "" {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return s.get(ctx, f.Key)
	}
	base, err := mc.get(ctx, f.DeltaBase)
	if err != nil {
		return nil, err
	}
	bf, ok := base.file(f.Path)
	if !ok {
		return nil, fmt.Errorf("%w: delta base %s has no %s", ErrCorrupt, f.DeltaBase, f.Path)
	}
	if base.BlockSize <= 0 {
		return nil, fmt.Errorf("%w: delta base %s: block size %d", ErrCorrupt, base.ID, base.BlockSize)
	}
	// The base is not checked on its own: the caller checks the whole
	// rebuilt file, and zstd (or AES-GCM) frames carry their own checks.
	br, err := s.openFile(ctx, mc, bf)
	if err != nil {
		return nil, err
	}
	dr, err := s.get(ctx, f.Key)
	if err != nil {
		br.Close()
		return nil, err
	}
	delta := &checkReader{rc: dr, h: sha256.New(), size: -1, sum: f.StoredSHA256, what: f.Path + " block delta"}
	bs := base.BlockSize
	return &mergeReader{base: br, delta: delta, dr: bufio.NewReaderSize(delta, 256<<10), bs: bs,
		size: f.Size, path: f.Path, block: make([]byte, bs), rec: make([]byte, 4+bs), next: -1}, nil
}

// checkReader passes a stream through and, at its end, checks its size
// (unless negative) and SHA-256.
type checkReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	size int64
	sum  string
	what string
}

func (c *checkReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF && ((c.size >= 0 && c.n != c.size) || hex.EncodeToString(c.h.Sum(nil)) != c.sum) {
		return n, fmt.Errorf("%w: %s: checksum mismatch (size %d)", ErrCorrupt, c.what, c.n)
	}
	return n, err
}

func (c *checkReader) Close() error { return c.rc.Close() }

// mergeReader streams a file rebuilt from its base version and a block
// delta: records of a block number (uint32, little-endian) and the page,
// in ascending block order (copyChangedBlocks writes them so). Blocks past
// the base's end that the delta does not hold are zeros; the output is cut
// to size. The delta is read to its end, so that its checksum is checked.
type mergeReader struct {
	base  io.ReadCloser
	delta io.Closer
	dr    *bufio.Reader
	bs    int
	size  int64
	path  string

	blk     int64  // block being served
	block   []byte // its content
	off     int    // bytes of block already served
	have    bool   // block holds blk
	baseEOF bool
	rec     []byte // the next delta record
	next    int64  // its block number; -1 = not read yet; -2 = no more
	out     int64  // bytes served
	err     error
}

func (m *mergeReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	n := 0
	for n < len(p) && m.out < m.size {
		if !m.have {
			if err := m.fill(); err != nil {
				m.err = err
				return n, err
			}
		}
		k := copy(p[n:], m.block[m.off:min(int64(m.bs), m.size-m.blk*int64(m.bs))])
		n += k
		m.off += k
		m.out += int64(k)
		if m.off == m.bs || m.out == m.size {
			m.blk++
			m.off = 0
			m.have = false
		}
	}
	if m.out == m.size {
		if err := m.finish(); err != nil {
			m.err = err
			return n, err
		}
		m.err = io.EOF
		if n == 0 {
			return 0, io.EOF
		}
	}
	return n, nil
}

// fill loads block m.blk: the delta's page if it has one, else the base's
// (zeros past its end).
func (m *mergeReader) fill() error {
	if !m.baseEOF {
		k, err := io.ReadFull(m.base, m.block)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			m.baseEOF = true
			clear(m.block[k:])
		case err != nil:
			return err
		}
	} else {
		clear(m.block)
	}
	if m.next == -1 {
		if err := m.readRecord(); err != nil {
			return err
		}
	}
	if m.next >= 0 && m.next < m.blk {
		return fmt.Errorf("%w: %s: block delta out of order (block %d after %d)", ErrCorrupt, m.path, m.next, m.blk)
	}
	if m.next == m.blk {
		copy(m.block, m.rec[4:])
		if err := m.readRecord(); err != nil {
			return err
		}
		if m.next >= 0 && m.next <= m.blk {
			return fmt.Errorf("%w: %s: block delta out of order (block %d after %d)", ErrCorrupt, m.path, m.next, m.blk)
		}
	}
	m.have = true
	return nil
}

// readRecord reads the next delta record into m.rec (m.next = -2 at the
// end of the delta).
func (m *mergeReader) readRecord() error {
	_, err := io.ReadFull(m.dr, m.rec)
	switch {
	case err == io.EOF:
		m.next = -2
		return nil
	case errors.Is(err, ErrCorrupt):
		return err
	case err != nil:
		return fmt.Errorf("%w: %s: block delta: %v", ErrCorrupt, m.path, err)
	}
	m.next = int64(binary.LittleEndian.Uint32(m.rec[:4]))
	return nil
}

// finish reads the delta to its end (records past the size are cut off)
// so that its checksum is checked.
func (m *mergeReader) finish() error {
	for last := int64(-1); m.next != -2; {
		if m.next >= 0 {
			if m.next <= last {
				return fmt.Errorf("%w: %s: block delta out of order (block %d after %d)", ErrCorrupt, m.path, m.next, last)
			}
			last = m.next
		}
		if err := m.readRecord(); err != nil {
			return err
		}
	}
	return nil
}

func (m *mergeReader) Close() error {
	return errors.Join(m.base.Close(), m.delta.Close())
}
