package pg

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// SCRAMVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for
// password ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"), as
// psql's \password does: given to CREATE/ALTER ROLE … PASSWORD, the
// server stores it as is, so the password itself never reaches the
// server, its statistics (pg_stat_activity, pg_stat_statements) or its logs.
// ok is false for a password with non-ASCII bytes, which PostgreSQL would
// first normalize (SASLprep): the caller then sends the password.
func SCRAMVerifier(password string) (verifier string, ok bool) {
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			return "", false
		}
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, 32)
	if err != nil {
		return "", false
	}
	stored, server := scramKeys(salted)
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored), b64(server)), true
}

func scramKeys(salted []byte) (stored, server []byte) {
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	sum := sha256.Sum256(mac.Sum(nil))
	mac = hmac.New(sha256.New, salted)
	mac.Write([]byte("Server Key"))
	return sum[:], mac.Sum(nil)
}

// SCRAMMatches reports whether password matches a PostgreSQL SCRAM-SHA-256
// verifier.
func SCRAMMatches(verifier, password string) bool {
	rest, ok := strings.CutPrefix(verifier, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterS, saltB64, ok := strings.Cut(iterSalt, ":")
	storedB64, _, ok2 := strings.Cut(keys, ":")
	if !ok || !ok2 {
		return false
	}
	iter, err := strconv.Atoi(iterS)
	salt, err2 := base64.StdEncoding.DecodeString(saltB64)
	stored, err3 := base64.StdEncoding.DecodeString(storedB64)
	if err != nil || err2 != nil || err3 != nil || iter <= 0 {
		return false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return false
	}
	want, _ := scramKeys(salted)
	return hmac.Equal(want, stored)
}
