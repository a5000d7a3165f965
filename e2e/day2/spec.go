// Package day2 holds pgherd's day-2 scenarios (e2e tests in this
// directory, run with PGHERD_E2E=1) and what they share with the day2
// bench suite: the spec of the cluster under test and a client that
// writes continuously and counts its acknowledged writes.
package day2

import (
	"fmt"
	"strings"
)

// The versions of postgresql-15 the scenarios move between.
const (
	FromVersion = "15.18-0+deb12u1" // bookworm
	ToVersion   = "15.20-0+deb12u1" // bookworm-security
)

// Spec is examples/ha/main.hcl (its text given) moved onto the lab network
// net ("10.84.0": every address of the example's 10.77.0.0/24, the VIP and
// the backup repository's included), with postgresql-15 pinned to pkg and
// shared_buffers set. The example stays the source of truth: a replacement
// that no longer matches is an error rather than a silently different
// cluster.
func Spec(example, net, pkg, sharedBuffers string) (string, error) {
	src := example
	for _, r := range []struct{ old, new string }{
		{`version              = 15`, `version              = 15` + "\n    package_version      = \"" + pkg + `"`},
		{`shared_buffers             = "128MB"`, `shared_buffers             = "` + sharedBuffers + `"`},
	} {
		if !strings.Contains(src, r.old) {
			return "", fmt.Errorf("examples/ha/main.hcl no longer contains %q: adapt day2.Spec", r.old)
		}
		src = strings.Replace(src, r.old, r.new, 1)
	}
	if !strings.Contains(src, `"10.77.0.100/24"`) {
		return "", fmt.Errorf("examples/ha/main.hcl no longer puts its VIP on 10.77.0.0/24: adapt day2.Spec")
	}
	return strings.ReplaceAll(src, "10.77.0.", net+"."), nil
}

// DSN reaches the example's primary port (5000) on the VIP of net as the
// superuser (the example's default password).
func DSN(net string) string {
	return fmt.Sprintf("postgres://postgres:lab-superuser-pw@%s.100:5000/postgres?sslmode=disable&connect_timeout=2", net)
}
