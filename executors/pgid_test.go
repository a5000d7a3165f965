package executors

import (
	"bytes"
	"testing"
)

func TestPGIDWriter(t *testing.T) {
	tests := []struct {
		name      string
		writes    []string
		wantOut   string
		wantGroup int
	}{
		{name: "group line then output", writes: []string{"pgherd-pgid:42\nboom\n"}, wantOut: "boom\n", wantGroup: 42},
		{name: "split across writes", writes: []string{"pgherd-", "pgid:4", "2\nbo", "om"}, wantOut: "boom", wantGroup: 42},
		{name: "sudo failed first", writes: []string{"sudo: a password is required\n"}, wantOut: "sudo: a password is required\n"},
		{name: "unterminated first line", writes: []string{"partial"}, wantOut: "partial"},
		{name: "long first line", writes: []string{string(bytes.Repeat([]byte("x"), 100))}, wantOut: string(bytes.Repeat([]byte("x"), 100))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := &pgidWriter{w: &out}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.flush()
			if out.String() != tt.wantOut || w.group() != tt.wantGroup {
				t.Errorf("got %q group %d, want %q group %d", out.String(), w.group(), tt.wantOut, tt.wantGroup)
			}
		})
	}
}

func TestHostErrorMessage(t *testing.T) {
	err := hostErr("db1", "10.0.0.1:22", ErrUnreachable, nil, "connect timeout")
	if got, want := err.Error(), "db1 (10.0.0.1:22): host unreachable: connect timeout"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
