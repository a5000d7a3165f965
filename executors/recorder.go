package executors

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"sync"
)

// Call is one thing done to a Recorder.
type Call struct {
	Op      string // "run", "put" or "get"
	Cmd     string // run: the command line
	Stdin   []byte // run: what was read from stdin
	Path    string // put, get: the file
	Content []byte // put: what was written
	Attrs   FileAttrs
}

// Responder computes a scripted answer to a command.
type Responder func(cmd string, stdin []byte) (Result, error)

type rule struct {
	match   func(string) bool
	respond Responder
}

// Recorder is a fake Host for unit tests of the engine and the modules. It
// answers Run from scripted rules (first match wins, in the order added),
// keeps PutFile contents in memory for GetFile, and records every call. A
// command no rule matches exits 127 with a message on stderr, so that a
// missing script is visible. It is safe for concurrent use.
type Recorder struct {
	name string

	mu    sync.Mutex
	rules []rule
	files map[string][]byte
	calls []Call
}

// NewRecorder returns a Recorder called name.
func NewRecorder(name string) *Recorder {
	return &Recorder{name: name, files: map[string][]byte{}}
}

// Name is the name given to NewRecorder.
func (r *Recorder) Name() string { return r.name }

// OnPrefix answers commands that start with prefix with res.
func (r *Recorder) OnPrefix(prefix string, res Result) *Recorder {
	return r.On(func(c string) bool { return strings.HasPrefix(c, prefix) }, fixed(res))
}

// OnRegexp answers commands matching the regular expression re with res.
// It panics if re does not compile (a bug in the test).
func (r *Recorder) OnRegexp(re string, res Result) *Recorder {
	rx := regexp.MustCompile(re)
	return r.On(rx.MatchString, fixed(res))
}

// On answers commands for which match is true with respond.
func (r *Recorder) On(match func(cmd string) bool, respond Responder) *Recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rules = append(r.rules, rule{match: match, respond: respond})
	return r
}

func fixed(res Result) Responder {
	return func(string, []byte) (Result, error) { return res, nil }
}

// SetFile makes GetFile return content for path.
func (r *Recorder) SetFile(path string, content []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[path] = bytes.Clone(content)
}

// Run records the call and answers it from the first matching rule.
func (r *Recorder) Run(ctx context.Context, cmd string, stdin io.Reader) (Result, error) {
	var in []byte
	if stdin != nil {
		var err error
		if in, err = io.ReadAll(stdin); err != nil {
			return Result{}, err
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, Call{Op: "run", Cmd: cmd, Stdin: in})
	var respond Responder
	for _, ru := range r.rules {
		if ru.match(cmd) {
			respond = ru.respond
			break
		}
	}
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Result{}, hostErr(r.name, "", nil, err, "command %q", shorten(cmd))
	}
	if respond == nil {
		return Result{ExitCode: 127, Stderr: []byte(fmt.Sprintf("recorder %s: no scripted result for %q", r.name, cmd))}, nil
	}
	return respond(cmd, in)
}

// RunStreaming is Run that then calls stderrLine, when not nil, with each
// line of the scripted standard error.
func (r *Recorder) RunStreaming(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(line string)) (Result, error) {
	res, err := r.Run(ctx, cmd, stdin)
	w, end := teeLines(io.Discard, stderrLine)
	w.Write(res.Stderr)
	end()
	return res, err
}

// PutFile records the call and stores the content.
func (r *Recorder) PutFile(ctx context.Context, path string, content io.Reader, attrs FileAttrs) error {
	b, err := io.ReadAll(content)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Call{Op: "put", Path: path, Content: b, Attrs: attrs})
	r.files[path] = b
	return nil
}

// GetFile records the call and returns what SetFile or PutFile stored, or
// an error wrapping fs.ErrNotExist.
func (r *Recorder) GetFile(ctx context.Context, path string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Call{Op: "get", Path: path})
	b, ok := r.files[path]
	if !ok {
		return nil, hostErr(r.name, "", nil, fs.ErrNotExist, "get %s", path)
	}
	return bytes.Clone(b), nil
}

// Calls returns a copy of every call so far, in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Commands returns the command lines run so far, in order.
func (r *Recorder) Commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cmds []string
	for _, c := range r.calls {
		if c.Op == "run" {
			cmds = append(cmds, c.Cmd)
		}
	}
	return cmds
}

// Reset forgets the recorded calls (rules and files stay).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}
