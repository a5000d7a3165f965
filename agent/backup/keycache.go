package backup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// The key-encryption key of an encrypted repository is scrypt of the
// passphrase: deliberately slow (about 0.1 s and 32 MB at N=32768), and paid
// by every process that opens the store. PostgreSQL starts one wal-push per
// WAL segment and one wal-fetch per segment it replays, so without a cache
// scrypt alone caps archiving and recovery at a few segments a second.
//
// The cache is one file per repository key in a directory of the host's
// (the agent's run directory): the derived key (32 bytes) and an HMAC of
// the passphrase under it, so that a changed passphrase misses the cache
// instead of opening the store. It is as secret as the passphrase in the
// agent's configuration beside it, and kept like it: a 0700 directory, a
// 0600 file, owned by the user PostgreSQL runs as. Its name derives from
// the repository's public wrapped key only, never from the passphrase.

// keyCachePath is the cache file of a repository's key.
func keyCachePath(dir string, ec *EncryptionConfig) string {
	sum := sha256.Sum256(append([]byte("pgherd kek cache v1\x00"), ec.WrappedKey...))
	return filepath.Join(dir, "kek-"+hex.EncodeToString(sum[:12]))
}

func passphraseMAC(kek []byte, passphrase string) []byte {
	m := hmac.New(sha256.New, kek)
	m.Write([]byte(passphrase))
	return m.Sum(nil)
}

// cachedKEK returns the cached key-encryption key for passphrase, if the
// cache holds one made from the same passphrase.
func cachedKEK(dir string, ec *EncryptionConfig, passphrase string) ([]byte, bool) {
	if dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(keyCachePath(dir, ec))
	if err != nil || len(b) != 64 {
		return nil, false
	}
	kek, mac := b[:32], b[32:]
	if !hmac.Equal(mac, passphraseMAC(kek, passphrase)) {
		return nil, false
	}
	return kek, true
}

// cacheKEK stores kek, written whole or not at all.
func cacheKEK(dir string, ec *EncryptionConfig, passphrase string, kek []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: key cache: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("backup: key cache: %s must exist and be private to its owner (0700)", dir)
	}
	f, err := os.CreateTemp(dir, ".kek-*")
	if err != nil {
		return fmt.Errorf("backup: key cache: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(append([]byte(nil), kek...), passphraseMAC(kek, passphrase)...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), keyCachePath(dir, ec))
	}
	if err != nil {
		return fmt.Errorf("backup: key cache: %w", err)
	}
	return nil
}
