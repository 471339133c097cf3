package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxErrorSamples bounds the error messages kept for the report.
const maxErrorSamples = 5

// result is everything a run reports. The JSON field names are stable:
// scripts parse them. Counts of messages (sent, acked, nacks, unanswered)
// cover the whole run, warmup included, and only the normal connections;
// throughput and latency cover the messages sent after the warmup.
type result struct {
	Transport       string  `json:"transport"`
	Addr            string  `json:"addr"`
	Conns           int     `json:"conns"`
	Size            string  `json:"size"` // "128" or "64-1024"
	SizeMin         int     `json:"size_min"`
	SizeMax         int     `json:"size_max"`
	Window          int     `json:"window"`
	Rate            float64 `json:"rate"`  // 0: unlimited
	Burst           string  `json:"burst"` // "" or "200ms/800ms"
	DurationSeconds float64 `json:"duration_seconds"`
	MessagesPerConn uint64  `json:"messages_per_conn"` // 0: no count limit
	WarmupSeconds   float64 `json:"warmup_seconds"`

	MessagesSent  uint64            `json:"messages_sent"`
	MessagesAcked uint64            `json:"messages_acked"`
	Nacks         map[string]uint64 `json:"nacks"` // "1".."4" and "6" -> count, all present
	Unanswered    uint64            `json:"unanswered"`
	// GoawayUnaccepted: messages above the seq of a GOAWAY, which the
	// server announced it did not accept (not errors, like NACK 4).
	GoawayUnaccepted uint64   `json:"goaway_unaccepted"`
	Goaways          int      `json:"goaways"`
	Errors           int      `json:"errors"`
	ErrorSamples     []string `json:"error_samples"`

	// ElapsedSeconds runs from the end of the warmup to the last answer
	// (or the end of sending, if later).
	ElapsedSeconds    float64   `json:"elapsed_seconds"`
	MeasuredMessages  uint64    `json:"measured_messages"` // acked, sent after the warmup
	MessagesPerSecond float64   `json:"messages_per_second"`
	MBPerSecond       float64   `json:"mb_per_second"` // acked payload, 10^6 bytes
	LatencyUS         latencyUS `json:"latency_us"`

	SlowConns        int    `json:"slow_conns"` // slow clients that connected
	SlowDisconnected int    `json:"slow_disconnected"`
	SlowStalled      int    `json:"slow_stalled"`   // alive; the server stopped reading them
	SlowConnected    int    `json:"slow_connected"` // alive and not stalled at the end
	SlowMessagesSent uint64 `json:"slow_messages_sent"`

	// QUIC (empty or zero over TCP). Streams are the load streams (QUIC
	// streams in reuse mode). ZeroRTTConns counts the connections that
	// resumed with 0-RTT (--0rtt). Killed*: --kill dropped KilledConns
	// connections at KilledAtSeconds; their load streams are reported
	// here, not in the counts above, and their failures are not errors.
	QUICStreams        string  `json:"quic_streams,omitempty"`
	StreamsPerConn     int     `json:"streams_per_conn,omitempty"`
	LoadStreams        int     `json:"load_streams"`
	ZeroRTTConns       int     `json:"zero_rtt_conns"`
	KilledConns        int     `json:"killed_conns"`
	KilledAtSeconds    float64 `json:"killed_at_seconds"`
	KilledStreams      int     `json:"killed_streams"`
	KilledMessagesSent uint64  `json:"killed_messages_sent"`
	KilledAnswered     uint64  `json:"killed_answered"`

	// --server-pid: the server's CPU time while the connections were
	// dialed, and during the measured period (from the end of the warmup
	// until every answer was in), in seconds (-1: not readable), and the
	// measured messages per server CPU-second. Zero without --server-pid.
	ServerPID                  int     `json:"server_pid,omitempty"`
	ServerCPUDialSeconds       float64 `json:"server_cpu_dial_seconds"`
	ServerCPUSeconds           float64 `json:"server_cpu_seconds"`
	MessagesPerServerCPUSecond float64 `json:"messages_per_server_cpu_second"`

	OK bool `json:"ok"`
}

// latencyUS is the ack latency distribution in microseconds.
type latencyUS struct {
	P50   int64   `json:"p50"`
	P95   int64   `json:"p95"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
	Mean  float64 `json:"mean"`
	Count int64   `json:"count"`
}

func newResult(cfg config, transport string) *result {
	res := &result{
		Transport:       transport,
		Addr:            cfg.Addr,
		Conns:           cfg.Conns,
		Size:            cfg.SizeSpec,
		SizeMin:         cfg.SizeMin,
		SizeMax:         cfg.SizeMax,
		Window:          cfg.Window,
		Rate:            cfg.Rate,
		Burst:           cfg.burstSpec(),
		DurationSeconds: cfg.Duration.Seconds(),
		MessagesPerConn: cfg.Messages,
		WarmupSeconds:   cfg.Warmup.Seconds(),
		Nacks:           map[string]uint64{"1": 0, "2": 0, "3": 0, "4": 0, "6": 0},
		ErrorSamples:    []string{},
		LoadStreams:     cfg.loadStreams(),
	}
	if cfg.Transport == "quic" {
		res.QUICStreams = cfg.QUICStreams
		res.StreamsPerConn = cfg.Streams
	}
	return res
}

func (res *result) addError(err error) {
	res.Errors++
	if len(res.ErrorSamples) < maxErrorSamples {
		res.ErrorSamples = append(res.ErrorSamples, err.Error())
	}
}

// collect adds up the connections once all of them are done.
func (res *result) collect(r *runner, conns []*conn, sendEnd int64) {
	hist := hdrhistogram.New(histMinUS, histMaxUS, histDigits(r.cfg.loadStreams()))
	end := sendEnd
	var acked, bytes uint64
	for _, c := range conns {
		if k, ok := c.rw.(interface{ killed() bool }); ok && k.killed() {
			// Dropped on purpose (--kill): what it sent and got answered is
			// reported apart; its failure is what was asked for.
			res.KilledStreams++
			res.KilledMessagesSent += c.sent.Load()
			res.KilledAnswered += c.rd.acked + c.rd.nackTotal
			continue
		}
		if c.err != nil {
			res.addError(c.err)
		}
		if c.rd.goaway {
			res.Goaways++
		}
		sent := c.sent.Load()
		if c.slow {
			res.SlowConns++
			res.SlowMessagesSent += sent
			switch {
			case c.slowDisc.Load():
				res.SlowDisconnected++
			case c.rd.slowStalled:
				res.SlowStalled++
			default:
				res.SlowConnected++
			}
			continue
		}
		res.MessagesSent += sent
		res.MessagesAcked += c.rd.acked
		for _, code := range []int{1, 2, 3, 4, 6} {
			res.Nacks[strconv.Itoa(code)] += c.rd.nacks[code]
		}
		// What is neither ACKed nor NACKed is unanswered, unless a GOAWAY
		// said it was not accepted.
		for s := c.rd.floor; s <= sent; s++ {
			switch {
			case c.nacked[s&c.mask]:
			case c.rd.goaway && s > c.rd.goawaySeq:
				res.GoawayUnaccepted++
			default:
				res.Unanswered++
			}
		}
		hist.Merge(c.rd.hist)
		acked += c.rd.measuredAcked
		bytes += c.rd.measuredBytes
		end = max(end, c.wr.stopped, c.rd.lastAnswer)
	}
	res.MeasuredMessages = acked
	res.ElapsedSeconds = nsToSeconds(end - r.warmup)
	if res.ElapsedSeconds > 0 {
		res.MessagesPerSecond = float64(acked) / res.ElapsedSeconds
		res.MBPerSecond = float64(bytes) / res.ElapsedSeconds / 1e6
	}
	res.LatencyUS = latencyUS{
		P50:   hist.ValueAtQuantile(50),
		P95:   hist.ValueAtQuantile(95),
		P99:   hist.ValueAtQuantile(99),
		P999:  hist.ValueAtQuantile(99.9),
		Max:   hist.Max(),
		Mean:  hist.Mean(),
		Count: hist.TotalCount(),
	}
	res.OK = res.Errors == 0 && res.Unanswered == 0
}

// failure says why the run failed.
func (res *result) failure() string {
	var why []string
	if res.Errors > 0 {
		why = append(why, fmt.Sprintf("%d errors", res.Errors))
	}
	if res.Unanswered > 0 {
		why = append(why, fmt.Sprintf("%d messages unanswered (no ACK or NACK)", res.Unanswered))
	}
	return strings.Join(why, ", ")
}

func writeJSON(w io.Writer, res *result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func writeText(w io.Writer, res *result) {
	limit := ""
	if res.DurationSeconds > 0 {
		limit = fmtSeconds(res.DurationSeconds)
	}
	if res.MessagesPerConn > 0 {
		if limit != "" {
			limit += " or "
		}
		limit += strconv.FormatUint(res.MessagesPerConn, 10) + " msgs/conn"
	}
	if res.WarmupSeconds > 0 {
		limit += " after " + fmtSeconds(res.WarmupSeconds) + " warmup"
	}
	rate := "max"
	if res.Rate > 0 {
		rate = strconv.FormatFloat(res.Rate, 'f', -1, 64) + "/s"
	}
	if res.Burst != "" {
		rate += ", burst " + res.Burst
	}
	fmt.Fprintf(w, "ingest-load %s %s: %d conns, size %s B, window %d, rate %s, %s\n",
		res.Transport, res.Addr, res.Conns, res.Size, res.Window, rate, limit)
	if res.QUICStreams != "" {
		fmt.Fprintf(w, "  quic        %s streams, %d per conn (%d load streams)", res.QUICStreams, res.StreamsPerConn, res.LoadStreams)
		if res.ZeroRTTConns > 0 {
			fmt.Fprintf(w, ", 0-RTT on %d of %d conns", res.ZeroRTTConns, res.Conns)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  messages    sent %d, acked %d, unanswered %d", res.MessagesSent, res.MessagesAcked, res.Unanswered)
	if res.GoawayUnaccepted > 0 {
		fmt.Fprintf(w, ", not accepted after GOAWAY %d", res.GoawayUnaccepted)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  nacks       1 malformed %d, 2 too large %d, 3 overloaded %d, 4 shutting down %d, 6 storage unavailable %d\n",
		res.Nacks["1"], res.Nacks["2"], res.Nacks["3"], res.Nacks["4"], res.Nacks["6"])
	fmt.Fprintf(w, "  errors      %d", res.Errors)
	if res.Goaways > 0 {
		fmt.Fprintf(w, " (GOAWAY on %d connections)", res.Goaways)
	}
	fmt.Fprintln(w)
	for _, s := range res.ErrorSamples {
		fmt.Fprintf(w, "              %s\n", s)
	}
	fmt.Fprintf(w, "  throughput  %.0f msgs/s, %.2f MB/s payload (%d msgs acked in %.3f s)\n",
		res.MessagesPerSecond, res.MBPerSecond, res.MeasuredMessages, res.ElapsedSeconds)
	l := res.LatencyUS
	fmt.Fprintf(w, "  ack latency p50 %s, p95 %s, p99 %s, p99.9 %s, max %s (mean %s)\n",
		fmtUS(l.P50), fmtUS(l.P95), fmtUS(l.P99), fmtUS(l.P999), fmtUS(l.Max), fmtUS(int64(l.Mean)))
	if res.ServerPID > 0 {
		fmt.Fprintf(w, "  server cpu  %.2f s measured (%.0f msgs per CPU-s), %.2f s while connecting (pid %d)\n",
			res.ServerCPUSeconds, res.MessagesPerServerCPUSecond, res.ServerCPUDialSeconds, res.ServerPID)
	}
	if res.SlowConns > 0 {
		fmt.Fprintf(w, "  slow        %d clients (%d msgs sent): %d disconnected by the server, %d stalled, %d still connected\n",
			res.SlowConns, res.SlowMessagesSent, res.SlowDisconnected, res.SlowStalled, res.SlowConnected)
	}
	if res.KilledConns > 0 {
		fmt.Fprintf(w, "  killed      %d conns at %s (%d load streams, %d msgs sent, %d answered); the server reclaims them at its idle timeout\n",
			res.KilledConns, fmtSeconds(res.KilledAtSeconds), res.KilledStreams, res.KilledMessagesSent, res.KilledAnswered)
	}
	if res.OK {
		fmt.Fprintln(w, "  result      OK: every message answered, no errors")
	} else {
		fmt.Fprintf(w, "  result      FAILED: %s\n", res.failure())
	}
}

func fmtSeconds(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) + "s" }

// fmtUS formats microseconds as µs below 1 ms, else as ms or s.
func fmtUS(us int64) string {
	switch {
	case us < 1000:
		return strconv.FormatInt(us, 10) + "µs"
	case us < 10_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 3, 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', 2, 64) + "s"
}
