package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/client"
)

func Example() {
	// An ingest node to talk to (usually ingestd; "quic://host:7401" first
	// and "tcp://host:7400" second is the usual list of endpoints).
	srv, err := ingest.NewServer(ingest.ServerConfig{Addr: "127.0.0.1:0", Reactors: 1, Sink: &ingest.DiscardSink{}, NonBlockingSink: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{"tcp://" + srv.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Send(ctx, fmt.Appendf(nil, "record %d", i)); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Close(ctx); err != nil { // flushes: every record is acknowledged
		log.Fatal(err)
	}
	fmt.Println("acknowledged:", c.Stats().Acked)
	// Output: acknowledged: 10
}
