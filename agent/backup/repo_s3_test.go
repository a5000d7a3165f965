package backup

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// versitygw finds the S3 gateway used as a real S3 server in tests
// (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0).
func versitygw(t *testing.T) string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{os.Getenv("GOBIN"), filepath.Join(home, "go", "bin")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "versitygw")); err == nil {
			return filepath.Join(p, "versitygw")
		}
	}
	t.Skip("versitygw not installed: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	return ""
}

// startS3 runs versitygw on a free loopback port over a temp directory and
// returns a repository in a fresh bucket.
func startS3(t *testing.T, prefix string) *S3Repo {
	t.Helper()
	bin := versitygw(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--access", "testkey", "--secret", "testsecret", "--port", addr, "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	repo, err := NewS3(S3Config{Endpoint: "http://" + addr, Bucket: "pgherd-test", AccessKey: "testkey",
		SecretKey: "testsecret", Prefix: prefix, PartSize: 5 << 20})
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
