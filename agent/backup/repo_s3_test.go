package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
)

// startS3 runs an S3 server and returns a repository in a fresh bucket.
func startS3(t *testing.T, prefix string) *S3Repo {
	t.Helper()
	repo, err := NewS3(S3Config{Endpoint: backuptest.S3(t), Bucket: "pgherd-test", AccessKey: backuptest.S3AccessKey,
		SecretKey: backuptest.S3SecretKey, Prefix: prefix, PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.CreateBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return repo
}

func TestS3Repo(t *testing.T) {
	for _, prefix := range []string{"", "cluster one/repo"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			testRepository(t, startS3(t, prefix))
		})
	}
}

// TestStoreOverS3 runs the encrypted WAL archive over S3: the Store is the
// same on every Repository.
func TestStoreOverS3(t *testing.T) {
	ctx := t.Context()
	repo := startS3(t, "pgherd")
	st, err := Init(ctx, repo, Options{Passphrase: "s3 secret", ScryptN: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	dir, names := fakeWAL(t, 3)
	for _, n := range names {
		if err := st.WALPush(ctx, filepath.Join(dir, n), WALPushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "seg")
	opts := WALFetchOptions{Prefetch: 2, SpoolDir: t.TempDir(), SegmentSize: testSegSize}
	for _, n := range names {
		if err := st.WALFetch(ctx, n, out, opts); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(filepath.Join(dir, n))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs after a round trip through S3", n)
		}
	}
	if _, err := Open(ctx, repo, Options{Passphrase: "other"}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key over S3: %v", err)
	}
}
