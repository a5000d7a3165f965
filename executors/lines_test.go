package executors

import (
	"slices"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLine)
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{name: "whole lines", writes: []string{"a\nb\n"}, want: []string{"a", "b"}},
		{name: "split across writes", writes: []string{"re", "storing: 1", "%\nrest", "oring: 2%\n"}, want: []string{"restoring: 1%", "restoring: 2%"}},
		{name: "last line unterminated", writes: []string{"a\npartial"}, want: []string{"a", "partial"}},
		{name: "crlf and empty lines", writes: []string{"a\r\n\nb\n"}, want: []string{"a", "", "b"}},
		{name: "too long a line", writes: []string{long, "y\n"}, want: []string{long, "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := &lineWriter{fn: func(l string) { got = append(got, l) }}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.close()
			w.Write([]byte("after close\n"))
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
