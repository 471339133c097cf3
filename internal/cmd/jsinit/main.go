// Command jsinit creates the JetStream stream that the ingestd nodes of
// `make run-cluster` write to (scripts/run-cluster.sh), so that the
// script needs no NATS tool installed: it waits until the cluster's
// JetStream answers, creates the stream (or updates it, when it exists
// from an earlier run), and prints its placement.
//
//	jsinit -url nats://127.0.0.1:4222,... -stream INGEST -subjects 'ingest.>' -replicas 3
//
// It is a development helper, not part of gyre's API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URLs, comma-separated")
	stream := flag.String("stream", "INGEST", "stream name")
	subjects := flag.String("subjects", "ingest.>", "subjects the stream captures, comma-separated")
	replicas := flag.Int("replicas", 3, "replicas (servers that store each message)")
	dupes := flag.Duration("dupe-window", 2*time.Minute, "duplicate window (Nats-Msg-Id deduplication)")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for JetStream to answer")
	flag.Parse()
	if err := run(*url, *stream, strings.Split(*subjects, ","), *replicas, *dupes, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "jsinit:", err)
		os.Exit(1)
	}
}

func run(url, stream string, subjects []string, replicas int, dupes, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := jetstream.StreamConfig{
		Name:       stream,
		Subjects:   subjects,
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Duplicates: dupes,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	}
	// The cluster elects its JetStream meta leader a moment after the
	// servers start: until then the request fails or times out, so every
	// failure is tried again until the wait is over.
	for {
		attempt, stop := context.WithTimeout(ctx, 2*time.Second)
		st, err := js.CreateOrUpdateStream(attempt, cfg)
		stop()
		if err == nil {
			info := st.CachedInfo()
			where := ""
			if c := info.Cluster; c != nil {
				where = "leader " + c.Leader
				for _, r := range c.Replicas {
					where += ", replica " + r.Name
				}
			}
			fmt.Printf("stream %s: subjects %v, %d replicas, file storage, duplicate window %v, %d messages; %s\n",
				info.Config.Name, info.Config.Subjects, info.Config.Replicas, info.Config.Duplicates, info.State.Msgs, where)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("creating stream %s: %w (still failing after %v)", stream, err, wait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
