package events

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Counts is a snapshot of the counters the metrics read on each scrape.
type Counts struct {
	RingBufDrops   uint64
	StorageFails   uint64
	Processor      Stats
	Stream         HubStats
	Webhook        AlerterStats
	Reloads        uint64
	ReloadFailures uint64
	EnforcementUp  bool
}

// Metrics are the Prometheus metrics of the daemon, in their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	events     *prometheus.CounterVec
	verdictLat prometheus.Histogram
	killLat    prometheus.Histogram
}

// NewMetrics registers the metrics; counts is called on every scrape.
func NewMetrics(counts func() Counts) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockwatch_events_total", Help: "Events by kind, verdict, rule and action.",
		}, []string{"kind", "verdict", "rule", "action"}),
		verdictLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dockwatch_exec_to_verdict_seconds",
			Help:    "Time from the kernel's exec verdict (its timestamp) to the daemon handling the event.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}),
		killLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dockwatch_kill_latency_seconds",
			Help:    "Time from a kernel exec event to the userspace kill after a divergence.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}),
	}
	reg.MustRegister(m.events, m.verdictLat, m.killLat,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, get func(Counts) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(get(counts())) }))
	}
	gauge := func(name, help string, get func(Counts) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return get(counts()) }))
	}
	counter("dockwatch_ringbuf_drops_total", "Kernel events lost because the ring buffer was full.",
		func(c Counts) uint64 { return c.RingBufDrops })
	counter("dockwatch_storage_failures_total", "Supervised processes whose state the kernel could not store.",
		func(c Counts) uint64 { return c.StorageFails })
	counter("dockwatch_records_total", "Kernel records read.", func(c Counts) uint64 { return c.Processor.Records })
	counter("dockwatch_records_malformed_total", "Kernel records that failed to decode.",
		func(c Counts) uint64 { return c.Processor.Malformed })
	counter("dockwatch_events_dropped_total", "Events dropped inside the daemon because its consumers were slow.",
		func(c Counts) uint64 { return c.Processor.Dropped })
	counter("dockwatch_divergences_total", "Exec verdicts on which the kernel and the Go classifier disagreed.",
		func(c Counts) uint64 { return c.Processor.Divergences })
	counter("dockwatch_divergence_kills_total", "Processes killed from userspace after a divergence.",
		func(c Counts) uint64 { return c.Processor.DivergenceKills })
	counter("dockwatch_divergence_kill_failures_total", "Divergence kills that failed.",
		func(c Counts) uint64 { return c.Processor.KillFailures })
	counter("dockwatch_stream_dropped_total", "Events lost by slow event-stream clients.",
		func(c Counts) uint64 { return c.Stream.Dropped })
	gauge("dockwatch_stream_clients", "Clients following the event stream.",
		func(c Counts) float64 { return float64(c.Stream.Clients) })
	counter("dockwatch_webhook_sent_total", "Alerts the webhook accepted.", func(c Counts) uint64 { return c.Webhook.Sent })
	counter("dockwatch_webhook_failed_total", "Alerts given up after the last retry.",
		func(c Counts) uint64 { return c.Webhook.Failed })
	counter("dockwatch_webhook_dropped_total", "Alerts dropped because the webhook queue was full.",
		func(c Counts) uint64 { return c.Webhook.Dropped })
	counter("dockwatch_webhook_deduplicated_total", "Alerts suppressed by the dedup window.",
		func(c Counts) uint64 { return c.Webhook.Deduped })
	counter("dockwatch_webhook_retries_total", "Webhook attempts after the first.",
		func(c Counts) uint64 { return c.Webhook.Retries })
	counter("dockwatch_reloads_total", "Configuration reloads applied.", func(c Counts) uint64 { return c.Reloads })
	counter("dockwatch_reload_failures_total", "Configuration reloads rejected.",
		func(c Counts) uint64 { return c.ReloadFailures })
	gauge("dockwatch_enforcement_up", "1 while the enforcement programs are attached.", func(c Counts) float64 {
		if c.EnforcementUp {
			return 1
		}
		return 0
	})
	return m
}

// Observe counts ev; now is when the daemon handled it.
func (m *Metrics) Observe(ev Event, now time.Time) {
	m.events.WithLabelValues(ev.Kind, ev.Verdict, ev.Rule, ev.Action).Inc()
	lat := now.Sub(ev.Time).Seconds()
	if lat < 0 {
		lat = 0
	}
	switch {
	case ev.Kind == KindExec:
		m.verdictLat.Observe(lat)
	case ev.Kind == KindDivergence && ev.Action == ActionKilled:
		m.killLat.Observe(lat)
	}
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
