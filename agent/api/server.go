package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults for the zero values of Server's fields and the HTTP limits.
const (
	DefaultMaxLoopAge    = 30 * time.Second
	DefaultActionTimeout = 60 * time.Second
	// MaxBodyBytes bounds a request body; larger ones are answered 413.
	MaxBodyBytes = 64 << 10
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 16 << 10
)

// Server is the agent's REST API. Its fields are read by Handler and
// ListenAndServe and must not change afterwards.
type Server struct {
	Source  Source     // required: the loop's last snapshot
	Control Controller // nil: write verbs answer 503
	// Token is the bearer token of the write verbs; empty disables them
	// (403). Clients send "Authorization: Bearer <token>"; patronictl's
	// Basic auth is accepted too, with the token as the password.
	Token string
	Log   *slog.Logger     // nil: discard
	Now   func() time.Time // nil: time.Now
	// MaxLoopAge is how old the loop's last pass may be for /liveness to
	// answer 200; 0 means DefaultMaxLoopAge.
	MaxLoopAge time.Duration
	// ActionTimeout bounds a write verb's call to Control; 0 means
	// DefaultActionTimeout.
	ActionTimeout time.Duration

	once    sync.Once
	metrics *Metrics
	handler http.Handler
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.MaxLoopAge <= 0 {
			s.MaxLoopAge = DefaultMaxLoopAge
		}
		if s.ActionTimeout <= 0 {
			s.ActionTimeout = DefaultActionTimeout
		}
		if s.Source == nil {
			s.Source = emptySource{}
		}
		s.metrics = NewMetrics(s.Source, s.Now)
		metrics := promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		})
		s.handler = s.routes(metrics)
	})
}

type emptySource struct{}

func (emptySource) Snapshot() Snapshot { return Snapshot{LagBytes: -1} }

// Metrics returns the server's Prometheus registry and loop histogram.
func (s *Server) Metrics() *Metrics {
	s.init()
	return s.metrics
}

// ObserveLoop records the duration of one pass of the loop in
// pgherd_loop_duration_seconds.
func (s *Server) ObserveLoop(d time.Duration) { s.Metrics().ObserveLoop(d) }

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	s.init()
	return s.handler
}

// ListenAndServe serves the API on addr (TLS when tlsCfg is not nil, which
// must then hold a certificate) until ctx ends, then shuts down gracefully,
// waiting up to 5 s for requests in flight. It returns nil after a shutdown
// caused by ctx, or the error that stopped the server.
func (s *Server) ListenAndServe(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return s.Serve(ctx, ln, tlsCfg)
}

// Serve is ListenAndServe on a listener it takes ownership of. Its one
// goroutine (the http.Server) has exited when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	s.init()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.ActionTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			srv.TLSConfig = tlsCfg.Clone()
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	s.Log.Info("api: serving", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// route is one non-check endpoint: a handler per method.
type route map[string]http.HandlerFunc

func (s *Server) routes(metrics http.Handler) http.Handler {
	routes := map[string]route{
		"/patroni":      {http.MethodGet: s.getStatus},
		"/cluster":      {http.MethodGet: s.getCluster},
		"/history":      {http.MethodGet: s.getHistory},
		"/config":       {http.MethodGet: s.getConfig, http.MethodPatch: s.write(s.patchConfig)},
		"/metrics":      {http.MethodGet: metrics.ServeHTTP},
		"/switchover":   {http.MethodPost: s.write(s.switchover)},
		"/failover":     {http.MethodPost: s.write(s.failover)},
		"/restart":      {http.MethodPost: s.write(s.restart)},
		"/reload":       {http.MethodPost: s.write(s.reload)},
		"/pause":        {http.MethodPost: s.write(s.pause(true))},
		"/resume":       {http.MethodPost: s.write(s.pause(false))},
		"/reinitialize": {http.MethodPost: s.write(s.reinitialize)},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if check, ok := checks[path]; ok || path == "/liveness" {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				s.serveCheck(w, r, path, check)
			default:
				methodNotAllowed(w, "GET, HEAD, OPTIONS")
			}
			return
		}
		rt, ok := routes[path]
		if !ok {
			writeText(w, http.StatusNotFound, "no such endpoint: "+path)
			return
		}
		h, ok := rt[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = rt[http.MethodGet]
		}
		if ok {
			h(w, r)
			return
		}
		allow := make([]string, 0, len(rt)+1)
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch} {
			if rt[m] != nil {
				allow = append(allow, m)
			}
		}
		if rt[http.MethodGet] != nil {
			allow = append(allow, http.MethodHead)
		}
		allow = append(allow, http.MethodOptions)
		if r.Method == http.MethodOptions {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		methodNotAllowed(w, strings.Join(allow, ", "))
	})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeText(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allow)
}

// serveCheck answers a health check: GET with the status JSON (except
// /liveness and /readiness), HEAD and OPTIONS with the code alone.
func (s *Server) serveCheck(w http.ResponseWriter, r *http.Request, path string, check checkFunc) {
	snap := s.Source.Snapshot()
	now := s.Now()
	q := r.URL.Query()
	if err := validateQuery(q); err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	var code int
	var why string
	if path == "/liveness" {
		code, why = checkLiveness(&snap, now, s.MaxLoopAge)
	} else {
		code, why = check(&snap, now, q)
	}
	if why != "" {
		w.Header().Set("X-Pgherd-Reason", why)
		s.Log.Debug("api: check failed", "path", path, "code", code, "reason", why)
	}
	if r.Method != http.MethodGet || statusOnly[path] {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(code)
		return
	}
	writeJSON(w, code, statusOf(&snap, now))
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	snap := s.Source.Snapshot()
	writeJSON(w, http.StatusOK, statusOf(&snap, s.Now()))
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	snap := s.Source.Snapshot()
	writeJSON(w, http.StatusOK, clusterOf(&snap))
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	h := s.Source.Snapshot().Cluster.History
	if h == nil {
		h = []HistoryEntry{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg := s.Source.Snapshot().Cluster.Config
	if len(cfg) == 0 || !json.Valid(cfg) {
		writeText(w, http.StatusServiceUnavailable, "the cluster configuration has not been read from the DCS")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(cfg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeText(w, http.StatusServiceUnavailable, "encoding the response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}
