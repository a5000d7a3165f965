// Command gendoc writes docs/spec.md, the reference of the spec language,
// from the schema in package spec.
//
//	go run ./spec/cmd/gendoc -o docs/spec.md
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/pgherd/pgherd/spec"
)

func main() {
	out := flag.String("o", "docs/spec.md", "file to write")
	flag.Parse()
	var b bytes.Buffer
	if err := spec.WriteDoc(&b); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
