package spec

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the units of a size, as in PostgreSQL (1kB = 1024 bytes),
// with their IEC spellings.
var sizeUnits = map[string]int64{
	"":    1,
	"B":   1,
	"kB":  1 << 10,
	"KB":  1 << 10,
	"KiB": 1 << 10,
	"MB":  1 << 20,
	"MiB": 1 << 20,
	"GB":  1 << 30,
	"GiB": 1 << 30,
	"TB":  1 << 40,
	"TiB": 1 << 40,
}

// parseSize reads a size: a whole number of bytes, or a whole number with a
// unit such as "16MB".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("it does not start with a whole number")
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, errors.New("the number is too large")
	}
	unit := strings.TrimSpace(s[i:])
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, errors.New("the unit " + strconv.Quote(unit) + " is unknown")
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("it is too large")
	}
	return n * mult, nil
}
