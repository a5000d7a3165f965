package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pgherd/pgherd/executors"
)

// haSecrets are the sensitive values examples/ha was applied with (its
// variables' defaults), by variable name.
var haSecrets = map[string]string{
	"pg_superuser_password":   haSuperuserPassword,
	"pg_replication_password": "lab-replication-pw",
	"app_password":            "lab-app-pw",
	"api_token":               haAPIToken,
	"vrrp_password":           "lab-vrrp",
	"backup_passphrase":       "lab-backup-passphrase",
}

// Files on the hosts the secrets test writes for itself (excluded from the
// search): the values to look for, and what the ps watcher saw.
const (
	secretsFile  = "/root/.e2e-secrets"
	psLeaksFile  = "/root/.e2e-ps-leaks"
	psStopFile   = "/root/.e2e-ps-stop"
	psWatcherPID = "/root/.e2e-ps-watcher.pid"
)

// secretHolders are the only files on a host that may hold a secret, by
// path prefix, with the user that must own them (mode 0600 or 0400).
var secretHolders = []struct{ prefix, owner string }{
	{"/etc/pgherd/", "postgres"},                // agent.json: API token, backup passphrase
	{"/etc/keepalived/keepalived.conf", "root"}, // the VRRP auth pass
	{"/var/lib/postgresql/", "postgres"},        // postgresql.auto.conf's primary_conninfo, .pgpass
}

// TestSecrets runs plan, apply, status and the agents of the HA cluster
// with known sensitive values, and asserts that none of them appears in
// pgherd's output, in a process command line on any host while apply
// works, in the journal or PostgreSQL's logs, in the agents' REST API
// answers, or in any file of a host but the few that need them, and those
// are 0600 and owned by the user that reads them.
func TestSecrets(t *testing.T) {
	dir := haCluster(t)
	var values []string
	for name, v := range haSecrets {
		// The environment is one of the ways secrets come in.
		t.Setenv("PGHERD_VAR_"+name, v)
		values = append(values, v)
	}
	patterns := base64.StdEncoding.EncodeToString([]byte(strings.Join(values, "\n") + "\n"))
	hosts := theLab.Hosts()
	eachHost(t, func(host string) error {
		// Base64 keeps the values off this command's own command line.
		_, err := theLab.Exec(context.Background(), host, "sh", "-c", fmt.Sprintf(
			"umask 077; echo %s | base64 -d > %s; rm -f %s %s", patterns, secretsFile, psLeaksFile, psStopFile))
		return err
	})
	t.Cleanup(func() {
		for _, h := range hosts {
			theLab.Exec(context.Background(), h.Name, "sh", "-c",
				fmt.Sprintf("touch %s; [ -f %s ] && kill $(cat %s) 2>/dev/null; rm -f %s %s %s %s", psStopFile, psWatcherPID, psWatcherPID, secretsFile, psLeaksFile, psStopFile, psWatcherPID))
		}
	})

	// Every host watches its process list while pgherd works on it.
	eachHost(t, func(host string) error {
		watch := fmt.Sprintf("while [ ! -e %s ]; do ps -eww -o user=,pid=,args= | grep -F -f %s >> %s; done",
			psStopFile, secretsFile, psLeaksFile)
		_, err := theLab.Exec(context.Background(), host, "sh", "-c",
			fmt.Sprintf("setsid sh -c %s </dev/null >/dev/null 2>&1 & echo $! > %s", executors.Quote(watch), psWatcherPID))
		return err
	})

	// Drift that makes apply handle every kind of secret: a role's
	// password, the agent's configuration (token, passphrase) and
	// keepalived's (VRRP password).
	primary := ""
	for _, h := range hostNames() {
		if onHost(t, h, `runuser -u postgres -- psql -XAtc "select pg_is_in_recovery()"`) == "f" {
			primary = h
		}
	}
	if primary == "" {
		t.Fatal("no primary found")
	}
	onHost(t, primary, `runuser -u postgres -- psql -XAtqc "ALTER ROLE app PASSWORD 'e2e-drifted'"`)
	onHost(t, "node1", "echo >> /etc/keepalived/keepalived.conf")
	onHost(t, "node2", "echo >> /etc/pgherd/agent.json")

	var outputs []result
	r := pgherd(t, dir, "plan", "-out", "secrets.plan", ".")
	if r.code != 0 {
		t.Fatalf("plan: %s", r)
	}
	outputs = append(outputs, r)
	for _, args := range [][]string{
		{"apply", "-auto-approve", "-plan", "secrets.plan", "."},
		{"plan", "-detailed-exitcode", "."},
		{"status", "."},
		{"plan", "-json", "."},
	} {
		r := pgherd(t, dir, args...)
		if r.code != 0 {
			t.Fatalf("pgherd %s: %s", strings.Join(args, " "), r)
		}
		outputs = append(outputs, r)
	}
	for _, r := range outputs {
		for _, v := range values {
			assertNoSecret(t, r, v)
		}
	}
	assertNoSecretInFile(t, filepath.Join(dir, "secrets.plan"), values)

	// The agents: their API answers, and a write verb with the token.
	for _, h := range hostNames() {
		for _, p := range []string{"/patroni", "/cluster", "/config", "/history", "/metrics"} {
			body := agentGet(t, hostAddr(t, h), p)
			for _, v := range values {
				if strings.Contains(body, v) {
					t.Errorf("%s GET %s answers a secret: %s", h, p, body)
				}
			}
		}
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+hostAddr(t, primary)+":8008/reload", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+haAPIToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST /reload with the token: %s", resp.Status)
	}

	eachHost(t, nothingFound("a process command line held a secret", fmt.Sprintf(
		"touch %s; kill $(cat %s) 2>/dev/null; cat %s 2>/dev/null; true", psStopFile, psWatcherPID, psLeaksFile)))

	t.Run("journal and PostgreSQL logs", func(t *testing.T) {
		eachHost(t, nothingFound("logs hold a secret", fmt.Sprintf(
			"journalctl --no-pager -o short-iso | grep -F -f %s; "+
				"find /var/log/postgresql /var/lib/postgresql -type f \\( -path '*/log/*' -o -path '/var/log/postgresql/*' \\) 2>/dev/null | xargs -r grep -H -F -f %s; true",
			secretsFile, secretsFile)))
	})

	t.Run("files", func(t *testing.T) {
		// Everything but the kernel's file systems and the packages'
		// own files (/usr but /usr/local).
		eachHost(t, func(host string) error {
			out, err := theLab.Exec(context.Background(), host, "sh", "-c", fmt.Sprintf(
				"{ for d in /*; do case $d in /proc|/sys|/dev|/usr) ;; *) echo $d;; esac; done; echo /usr/local; }"+
					" | xargs grep -rlsF -f %s --exclude-dir=journal"+
					" | grep -v -x -e %s -e %s -e %s"+
					" | while read -r f; do stat -c '%%a %%U %%n' \"$f\"; done; true",
				secretsFile, secretsFile, psLeaksFile, psWatcherPID))
			if err != nil {
				return err
			}
			var bad []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if l == "" {
					continue
				}
				f := strings.SplitN(l, " ", 3)
				if len(f) != 3 {
					return fmt.Errorf("stat printed %q", l)
				}
				if why := secretHolderProblem(f[2], f[0], f[1]); why != "" {
					bad = append(bad, fmt.Sprintf("%s (mode %s, owner %s): %s", f[2], f[0], f[1], why))
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("files hold a secret:\n  %s", strings.Join(bad, "\n  "))
			}
			return nil
		})
	})
}

// secretHolderProblem says what is wrong with a file that holds a secret,
// or "" when it may hold one.
func secretHolderProblem(path, mode, owner string) string {
	for _, h := range secretHolders {
		if strings.HasPrefix(path, h.prefix) {
			switch {
			case mode != "600" && mode != "400":
				return "readable by others than its owner"
			case owner != h.owner:
				return "owned by " + owner + ", want " + h.owner
			}
			return ""
		}
	}
	return "no file there should hold a secret"
}

// eachHost runs fn on every lab host at once and fails the test with every
// host's error.
func eachHost(t *testing.T, fn func(host string) error) {
	t.Helper()
	hosts := theLab.Hosts()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { errs[i] = fn(h.Name) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", hosts[i].Name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// nothingFound runs script on a host and fails with what when it prints
// anything.
func nothingFound(what, script string) func(host string) error {
	return func(host string) error {
		out, err := theLab.Exec(context.Background(), host, "sh", "-c", script)
		if err != nil {
			return err
		}
		if out = strings.TrimSpace(out); out != "" {
			return fmt.Errorf("%s:\n%s", what, out)
		}
		return nil
	}
}

// agentGet is the body of a GET on a host's agent API.
func agentGet(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := apiClient.Get("http://" + addr + ":8008" + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, addr, err)
	}
	return string(b)
}

// assertNoSecretInFile fails when a local file holds a secret yet others
// than its owner may read it.
func assertNoSecretInFile(t *testing.T, path string, values []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if strings.Contains(string(b), v) && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s holds a secret and has mode %o", path, fi.Mode().Perm())
		}
	}
}
