package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SignatureHeader carries the HMAC-SHA256 of the request body, keyed with the secret from
// alerts.webhook_secret_file: "sha256=" + hex. TimestampHeader is the Unix time the alert was
// first sent; it is part of the signed body too (event.time), so a receiver can refuse replays.
const (
	SignatureHeader = "X-Dockwatch-Signature"
	TimestampHeader = "X-Dockwatch-Timestamp"
)

// Alerter posts alerts to a webhook from its own goroutine. Offer never waits: alerts go
// through a bounded queue, a full queue drops the alert (counted), and the same (user, command)
// alerts at most once per dedup window. A dead or slow webhook delays nothing but its own
// queue.
type Alerter struct {
	URL         string
	Secret      []byte        // HMAC key; nil sends no signature
	DedupWindow time.Duration // one alert per (user, command) per window; 0 disables dedup
	Audit       bool          // audit verdicts alert too
	MaxAttempts int           // per alert, first try included; 0 means 5
	Backoff     time.Duration // first retry delay, doubled each time; 0 means 500ms
	Client      *http.Client  // nil: a client with a 5s timeout

	startOnce sync.Once
	q         chan Event
	mu        sync.Mutex
	last      map[string]time.Time

	sent, failed, dropped, deduped, retries atomic.Uint64
}

// AlerterStats are the webhook counters.
type AlerterStats struct {
	Sent    uint64 // alerts the webhook accepted (2xx)
	Failed  uint64 // alerts given up after the last attempt
	Dropped uint64 // alerts not queued because the queue was full
	Deduped uint64 // alerts suppressed by the dedup window
	Retries uint64 // attempts after the first
}

// Stats returns the counters.
func (a *Alerter) Stats() AlerterStats {
	return AlerterStats{Sent: a.sent.Load(), Failed: a.failed.Load(), Dropped: a.dropped.Load(),
		Deduped: a.deduped.Load(), Retries: a.retries.Load()}
}

const alertQueue = 256

func (a *Alerter) init() {
	a.startOnce.Do(func() {
		a.q = make(chan Event, alertQueue)
		a.last = map[string]time.Time{}
	})
}

// Alertable says whether ev raises an alert: blocks (killed or denied, tamper events among
// them) and divergences; audit verdicts when audit is set.
func Alertable(ev Event, audit bool) bool {
	switch ev.Kind {
	case KindDivergence:
		return true
	case KindExec, KindConnect, KindTamper:
		return ev.Verdict == "block" || ev.Action == ActionKilled || ev.Action == ActionDenied ||
			(audit && ev.Verdict == "audit")
	}
	return false
}

// dedupKey is (user, command); a connect event has no command, so its socket stands in.
func dedupKey(ev Event) string {
	what := ev.Command
	if what == "" {
		what = ev.Kind + " " + ev.Socket
	}
	user := ev.User
	if user == "" && ev.UID != nil {
		user = strconv.FormatUint(uint64(*ev.UID), 10)
	}
	return ev.Kind + "\x00" + user + "\x00" + what
}

// Offer queues an alert for ev when it is alertable and not a duplicate. It reports whether it
// queued one.
func (a *Alerter) Offer(ev Event) bool {
	if a == nil || a.URL == "" || !Alertable(ev, a.Audit) {
		return false
	}
	a.init()
	if a.DedupWindow > 0 {
		key, now := dedupKey(ev), time.Now()
		a.mu.Lock()
		if t, ok := a.last[key]; ok && now.Sub(t) < a.DedupWindow {
			a.mu.Unlock()
			a.deduped.Add(1)
			return false
		}
		a.last[key] = now
		if len(a.last) > 4096 {
			for k, t := range a.last {
				if now.Sub(t) >= a.DedupWindow {
					delete(a.last, k)
				}
			}
		}
		a.mu.Unlock()
	}
	select {
	case a.q <- ev:
		return true
	default:
		a.dropped.Add(1)
		return false
	}
}

// Run posts queued alerts until ctx ends.
func (a *Alerter) Run(ctx context.Context) {
	a.init()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-a.q:
			a.deliver(ctx, ev)
		}
	}
}

// Payload is the webhook body: "text" is what Slack (and compatible receivers) show; "event"
// is the schema v1 event.
type Payload struct {
	Text  string `json:"text"`
	Event Event  `json:"event"`
}

// AlertText is the one-line summary of an alert.
func AlertText(ev Event) string {
	who := ev.User
	if who == "" && ev.UID != nil {
		who = fmt.Sprintf("uid %d", *ev.UID)
	}
	switch ev.Kind {
	case KindDivergence:
		return fmt.Sprintf("dockwatch: classifier divergence for %s (pid %d): kernel %s, Go %s (%s), action %s",
			who, ev.Pid, ev.Kernel, ev.Verdict, ev.Command, ev.Action)
	case KindConnect:
		return fmt.Sprintf("dockwatch: %s connect to %s by %s (pid %d, %s), action %s",
			ev.Verdict, ev.Socket, who, ev.Pid, ev.Exe, ev.Action)
	case KindTamper:
		return fmt.Sprintf("dockwatch: %s tamper with a running docker client by %s (pid %d, %s), rule %s, action %s: %s",
			ev.Verdict, who, ev.Pid, ev.Exe, ev.Rule, ev.Action, ev.Reason)
	}
	cmd := ev.Command
	if cmd == "" {
		cmd = "(" + ev.Rule + ")"
	}
	return fmt.Sprintf("dockwatch: %s `docker %s` by %s (pid %d), rule %s, action %s",
		ev.Verdict, cmd, who, ev.Pid, ev.Rule, ev.Action)
}

func (a *Alerter) deliver(ctx context.Context, ev Event) {
	body, err := json.Marshal(Payload{Text: AlertText(ev), Event: ev})
	if err != nil {
		a.failed.Add(1)
		return
	}
	attempts, backoff := a.MaxAttempts, a.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	client := a.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for i := 0; i < attempts; i++ {
		if i > 0 {
			a.retries.Add(1)
			select {
			case <-ctx.Done():
				a.failed.Add(1)
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
		if a.post(ctx, client, body, ts) == nil {
			a.sent.Add(1)
			return
		}
	}
	a.failed.Add(1)
}

func (a *Alerter) post(ctx context.Context, client *http.Client, body []byte, ts string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dockwatch")
	req.Header.Set(TimestampHeader, ts)
	if a.Secret != nil {
		req.Header.Set(SignatureHeader, Sign(a.Secret, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: %s", resp.Status)
	}
	return nil
}

// Sign is the SignatureHeader value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
