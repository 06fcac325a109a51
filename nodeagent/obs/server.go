package obs

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TokenFile is the name of the file, in the session directory (0600, like the secret), that
// holds the dashboard's token.
const TokenFile = "dashboard.token"

// cookieName carries the token for the page's own requests once a browser has shown it.
const cookieName = "shoal_dashboard"

// maxConns bounds the connections the server holds at once; more wait in the kernel's
// backlog, so that a flood costs a bounded amount of memory.
const maxConns = 64

// NewToken returns a fresh random token: 32 bytes, hex.
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Server serves the dashboard page, /metrics and the page's JSON behind the cluster's token.
type Server struct {
	log   hclog.Logger
	rec   *Recorder
	src   Source
	token string
	ln    net.Listener
	srv   *http.Server
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewServer returns a server for rec's recordings and src's state, which admits a request
// only with token (see authorized).
func NewServer(log hclog.Logger, rec *Recorder, src Source, token string) *Server {
	rec.SetSource(src)
	s := &Server{log: log, rec: rec, src: src, token: token, stop: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(rec.Registry(), promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("GET /api/snapshot", s.snapshot)
	mux.HandleFunc("GET /api/timeline", s.timeline)
	mux.HandleFunc("GET /api/report", s.report)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/logs", s.logs)
	s.page(mux)
	s.srv = &http.Server{Handler: s.auth(mux), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	return s
}

// Start listens on host:port (port 0: one the OS picks) and serves until Close.
func (s *Server) Start(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen for the dashboard on %s: %w; choose another with --dashboard-host/--dashboard-port", net.JoinHostPort(host, strconv.Itoa(port)), err)
	}
	s.ln = limitListener(ln, maxConns)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("dashboard server stopped", "error", err)
		}
	}()
	go func() { // samples for the report's peak object store use
		defer s.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.rec.Sample()
			}
		}
	}()
	return nil
}

// URL is where the server serves, without the token ("" before Start).
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String() + "/"
}

// Close stops the server; requests in flight get a second to end.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	close(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	return err
}

// auth admits a request that carries the token: as "Authorization: Bearer TOKEN" (Prometheus'
// authorization setting), as ?token=TOKEN (the URL `shoal dashboard` prints; the answer sets
// a cookie so that the page's own requests carry it), or in that cookie. Anything else is 401.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("token"); tok != "" && s.valid(tok) {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			next.ServeHTTP(w, r)
			return
		}
		if h := r.Header.Get("Authorization"); h != "" {
			if tok, ok := strings.CutPrefix(h, "Bearer "); ok && s.valid(tok) {
				next.ServeHTTP(w, r)
				return
			}
		}
		if c, err := r.Cookie(cookieName); err == nil && s.valid(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
		http.Error(w, "401 unauthorized: open the URL `shoal dashboard` prints (it carries the cluster's token), or send Authorization: Bearer <token>", http.StatusUnauthorized)
	})
}

func (s *Server) valid(tok string) bool {
	return len(tok) == len(s.token) && subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

// Page is what the page's JSON (/api/snapshot) holds: the cluster's state and the recorder's
// view of tasks.
type Page struct {
	Snapshot
	Tasks  []FunctionCount `json:"tasks"`
	Recent []RecordJSON    `json:"recent"`
	Report Report          `json:"report"`
}

// FunctionCount is how many calls of one function are in each state.
type FunctionCount struct {
	Name   string         `json:"name"`
	Kind   string         `json:"kind"`
	States map[string]int `json:"states"`
}

// RecordJSON is a Record for the page.
type RecordJSON struct {
	Task    string  `json:"task_id"`
	Name    string  `json:"name"`
	Kind    string  `json:"kind"`
	State   string  `json:"state"`
	Node    string  `json:"node"`
	Worker  string  `json:"worker"`
	Attempt int     `json:"attempt"`
	Reason  string  `json:"reason,omitempty"`
	Start   float64 `json:"start_s"`
	End     float64 `json:"end_s"`
}

// PageData builds the page's JSON; recent is how many of the latest tasks it lists. It copies
// only those (the counts by function are made under the recorder's lock without copying), so an
// open page costs a walk of the recorder's table once a second, not a copy of it.
func (r *Recorder) PageData(recent int) Page {
	var p Page
	var snap *Snapshot
	if src := r.source(); src != nil {
		p.Snapshot = src.Snapshot()
		snap = &p.Snapshot
	}
	type fnKey struct {
		kind Kind
		name uint32 // interned
	}
	counts := map[fnKey]*[len(stateNames)]int{}
	count := func(rec *slot) {
		c := counts[fnKey{rec.kind, rec.name}]
		if c == nil {
			c = new([len(stateNames)]int)
			counts[fnKey{rec.kind, rec.name}] = c
		}
		c[rec.state]++
	}
	names := map[fnKey]string{}
	var last []Record
	r.mu.Lock()
	n := len(r.ended)
	for i := 0; i < n; i++ {
		rec := &r.ended[(r.next+i)%n]
		count(rec)
		if i >= n-recent {
			last = append(last, r.record(rec))
		}
	}
	running, other := 0, 0
	for _, rec := range r.live {
		count(&rec)
		if rec.state == Running && running < recent {
			last = append(last, r.record(&rec))
			running++
		} else if rec.state != Running && other < recent {
			last = append(last, r.record(&rec))
			other++
		}
	}
	for k := range counts {
		names[k] = r.strs.str(k.name)
	}
	r.mu.Unlock()
	for k, c := range counts {
		fc := FunctionCount{Name: names[k], Kind: k.kind.String(), States: map[string]int{}}
		for st, v := range c {
			if v > 0 {
				fc.States[State(st).String()] = v
			}
		}
		p.Tasks = append(p.Tasks, fc)
	}
	sort.Slice(p.Tasks, func(i, j int) bool {
		if p.Tasks[i].Name != p.Tasks[j].Name {
			return p.Tasks[i].Name < p.Tasks[j].Name
		}
		return p.Tasks[i].Kind < p.Tasks[j].Kind
	})
	// the latest activity last: an end, else a start, else the submission
	at := func(rec *Record) time.Time {
		switch {
		case !rec.End.IsZero():
			return rec.End
		case !rec.Start.IsZero():
			return rec.Start
		}
		return rec.Submit
	}
	sort.SliceStable(last, func(i, j int) bool { return at(&last[i]).Before(at(&last[j])) })
	if len(last) > recent {
		last = last[len(last)-recent:]
	}
	for _, rec := range last {
		j := RecordJSON{Task: rec.Task.String(), Name: rec.Name, Kind: rec.Kind.String(), State: rec.State.String(),
			Node: rec.Node, Worker: rec.Worker, Attempt: rec.Attempt, Reason: rec.Reason}
		if !rec.Start.IsZero() {
			j.Start = rec.Start.Sub(r.start).Seconds()
		}
		if !rec.End.IsZero() {
			j.End = rec.End.Sub(r.start).Seconds()
		}
		p.Recent = append(p.Recent, j)
	}
	p.Report = r.report(snap)
	return p
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.rec.PageData(200))
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.rec.Timeline())
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.rec.Report())
}

// logs answers the page's log view: the latest 1000 lines of ?worker=, ?task= or ?actor= (or
// ?node=) as text, prefixed, from every node's ring where the source asks its members
// (LogSource), else from this node's.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := LogFilter{Worker: q.Get("worker"), Task: q.Get("task"), Actor: q.Get("actor"), Node: q.Get("node")}
	var lines []Line
	var notes []string
	if ls, ok := s.src.(LogSource); ok {
		m, err := TailLogs(ls, f, 1000)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		lines, notes = m.Lines, m.Notes()
	} else {
		lines, _ = s.rec.Logs(f, 0, 0)
		if len(lines) > 1000 {
			lines = lines[len(lines)-1000:]
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	if len(lines) == 0 {
		fmt.Fprintln(w, "(no lines)")
	}
	for _, l := range lines {
		fmt.Fprintln(w, l.Prefix()+l.Text)
	}
}

// events streams the page's JSON as server-sent events, one document every second, until the
// client goes or the server closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		b, _ := json.Marshal(s.rec.PageData(200))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// limitListener accepts at most n connections at once.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, sem: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
