package pg

import "testing"

// TestSCRAM: a verifier matches its password and no other; verifiers that
// are not SCRAM or are malformed never match (TestCluster shows PostgreSQL
// storing the verifier as given).
func TestSCRAM(t *testing.T) {
	v, ok := SCRAMVerifier("pencil")
	if !ok || !SCRAMMatches(v, "pencil") || SCRAMMatches(v, "pencils") {
		t.Fatalf("verifier %q, %v", v, ok)
	}
	if w, _ := SCRAMVerifier("pencil"); w == v {
		t.Fatal("two verifiers of one password share a salt")
	}
	if _, ok := SCRAMVerifier("crème"); ok {
		t.Fatal("a non-ASCII password got a verifier without SASLprep")
	}
	for _, v := range []string{"", "md5abcdef", "SCRAM-SHA-256$", "SCRAM-SHA-256$x:AAAA$AAAA:AAAA", "SCRAM-SHA-256$4096:!!$AAAA:AAAA"} {
		if SCRAMMatches(v, "pencil") {
			t.Errorf("%q matched", v)
		}
	}
}
