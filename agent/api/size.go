package api

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadSize is returned by ParseSize for a value that is not a byte count.
var ErrBadSize = errors.New("bad size")

// ParseSize reads a byte count as Patroni's ?lag= does: a plain integer
// (bytes) or an integer with a unit B, kB, MB, GB or TB (powers of 1024,
// case-insensitive, e.g. "1048576", "1024kB", "10MB", "1GB").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: %q: want bytes or a number with kB, MB, GB or TB", ErrBadSize, s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %w", ErrBadSize, s, err)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "", "b":
		mult = 1
	case "kb", "k":
		mult = 1 << 10
	case "mb", "m":
		mult = 1 << 20
	case "gb", "g":
		mult = 1 << 30
	case "tb", "t":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("%w: %q: unknown unit, want B, kB, MB, GB or TB", ErrBadSize, s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%w: %q: too large", ErrBadSize, s)
	}
	return n * mult, nil
}
