package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Hub keeps the last events (the history) and fans new ones out to subscribers. Publish never
// waits: a subscriber whose queue is full loses the event, and the loss is counted.
type Hub struct {
	mu      sync.Mutex
	hist    []Event // ring of cap(hist) events
	next    int     // where the next event goes
	full    bool
	subs    map[*Subscription]struct{}
	dropped atomic.Uint64
}

// NewHub keeps up to history events.
func NewHub(history int) *Hub {
	return &Hub{hist: make([]Event, max(history, 1)), subs: map[*Subscription]struct{}{}}
}

// Subscription is a subscriber's bounded queue.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	dropped atomic.Uint64
	hub     *Hub
	once    sync.Once
}

// Publish appends ev to the history and offers it to every subscriber.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hist[h.next] = ev
	h.next++
	if h.next == len(h.hist) {
		h.next, h.full = 0, true
	}
	for s := range h.subs {
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
}

// Subscribe returns the history (oldest first) and a subscription for what follows, with no
// event lost or repeated in between.
func (h *Hub) Subscribe(queue int) ([]Event, *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Subscription{c: make(chan Event, max(queue, 1)), hub: h}
	s.C = s.c
	h.subs[s] = struct{}{}
	return h.historyLocked(), s
}

// History returns the kept events, oldest first.
func (h *Hub) History() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.historyLocked()
}

func (h *Hub) historyLocked() []Event {
	if !h.full {
		return append([]Event(nil), h.hist[:h.next]...)
	}
	out := make([]Event, 0, len(h.hist))
	out = append(out, h.hist[h.next:]...)
	return append(out, h.hist[:h.next]...)
}

// Close ends the subscription; its channel is closed.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		close(s.c)
		s.hub.mu.Unlock()
	})
}

// Dropped counts the events this subscriber lost.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// HubStats are the stream's counters.
type HubStats struct {
	Clients int    // current subscribers
	Dropped uint64 // events lost by slow subscribers, since start
}

// Stats returns the current counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HubStats{Clients: len(h.subs), Dropped: h.dropped.Load()}
}

// Request is what a client of the event socket sends: one JSON line.
type Request struct {
	Op      string    `json:"op"`                // "events" or "status"
	N       int       `json:"n,omitempty"`       // only the last N matching history events; 0 all
	Follow  bool      `json:"follow,omitempty"`  // keep streaming new events
	Since   time.Time `json:"since,omitzero"`    // only events at or after this time
	Verdict string    `json:"verdict,omitempty"` // only events with this verdict
	User    string    `json:"user,omitempty"`    // only events of this user (name or uid)
}

// Match reports whether ev passes the request's filters.
func (r Request) Match(ev Event) bool {
	if !r.Since.IsZero() && ev.Time.Before(r.Since) {
		return false
	}
	if r.Verdict != "" && ev.Verdict != r.Verdict {
		return false
	}
	if r.User != "" && ev.User != r.User && (ev.UID == nil || fmt.Sprint(*ev.UID) != r.User) {
		return false
	}
	return true
}

// Server answers requests on the event socket.
type Server struct {
	Hub    *Hub
	Status func() any // answers {"op":"status"}
	Queue  int        // per-client queue of a follower; 0 means 1024
	Log    func(msg string, args ...any)

	wg sync.WaitGroup
}

// ErrBadRequest is sent back (as {"error": ...}) for a request that cannot be parsed.
var ErrBadRequest = errors.New("bad request")

// Listen creates the unix socket at path, mode 0660, owned by root and group gid, atomically:
// it is bound under a temporary name, given its mode and owner, then renamed into place, so
// nobody outside the group ever finds it open to them.
func Listen(path string, gid int) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("event socket: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("event socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("event socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Chown(tmp, 0, gid); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return ln, nil
}

// Serve accepts connections until ln is closed or ctx ends, then waits for the connections
// it started to end.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var conns sync.Map
	defer func() {
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		s.wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("event socket: %w", err)
		}
		conns.Store(c, nil)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conns.Delete(c)
			defer c.Close()
			if err := s.handle(ctx, c); err != nil && s.Log != nil {
				s.Log("event socket client", "err", err)
			}
		}()
	}
}

func (s *Server) handle(ctx context.Context, c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 4096).ReadSlice('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return fmt.Errorf("read request: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	w := bufio.NewWriter(c)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(map[string]string{"error": fmt.Sprintf("%v: %v", ErrBadRequest, err)})
		return w.Flush()
	}
	switch req.Op {
	case "status":
		var st any = map[string]string{"error": "status not available"}
		if s.Status != nil {
			st = s.Status()
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		return w.Flush()
	case "events", "":
	default:
		_ = enc.Encode(map[string]string{"error": fmt.Sprintf("%v: unknown op %q (events or status)", ErrBadRequest, req.Op)})
		return w.Flush()
	}

	var hist []Event
	var sub *Subscription
	if req.Follow {
		q := s.Queue
		if q <= 0 {
			q = 1024
		}
		hist, sub = s.Hub.Subscribe(q)
		defer sub.Close()
	} else {
		hist = s.Hub.History()
	}
	var match []Event
	for _, ev := range hist {
		if req.Match(ev) {
			match = append(match, ev)
		}
	}
	if req.N > 0 && len(match) > req.N {
		match = match[len(match)-req.N:]
	}
	for _, ev := range match {
		if err := enc.Encode(ev); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil || sub == nil {
		return err
	}
	// Follow: a closed connection is noticed by the reader; the writer only sees it at the
	// next event.
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-gone:
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			if !req.Match(ev) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return err
			}
			// Flush when the queue is empty, so a burst goes out in few writes.
			if len(sub.C) == 0 {
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
	}
}
