// Package interrupt runs a pgherd command and presses Ctrl-C (SIGINT) once
// it prints a given line: how the e2e suites check that an interrupted
// apply or restore stops cleanly and that the next run finishes the work.
package interrupt

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Result is what the interrupted command printed and how it ended.
type Result struct {
	Stdout, Stderr string
	// Code is the exit code (0 when the command succeeded).
	Code int
	// Interrupted: a line matched and SIGINT was sent.
	Interrupted bool
}

// Run runs bin with args in dir (NO_COLOR set) and sends it SIGINT delay
// after the first line of its standard output for which at holds. It
// returns once the command has exited; the error is for a command that
// could not be run or waited for, not for a non-zero exit.
func Run(bin, dir string, at func(line string) bool, delay time.Duration, args ...string) (Result, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	var r Result
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		seen.WriteString(line + "\n")
		if !r.Interrupted && at(line) {
			r.Interrupted = true
			if delay > 0 {
				time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGINT) })
			} else {
				_ = cmd.Process.Signal(syscall.SIGINT)
			}
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	r.Stdout, r.Stderr = seen.String(), stderr.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code, err = ee.ExitCode(), nil
	}
	return r, err
}
