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

// A producer that keeps its session id (in a file, say) resumes the
// session from a new Client: the server's WELCOME tells it what is stored.
func Example_resume() {
	srv, err := ingest.NewServer(ingest.ServerConfig{Addr: "127.0.0.1:0", Reactors: 1, Sink: &ingest.DiscardSink{}, NonBlockingSink: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	cfg := client.Config{Endpoints: []string{"tcp://" + srv.Addr()}, Name: "example"}

	first, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := first.Send(ctx, []byte("one")); err != nil {
		log.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		log.Fatal(err)
	}

	cfg.Session = first.Session() // persist it; pass it back later
	second, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := second.Send(ctx, []byte("two")); err != nil {
		log.Fatal(err)
	}
	if err := second.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("same session:", second.Session() == first.Session())
	fmt.Println("sessions opened on the server:", srv.Stats().Sessions.Created)
	// Output:
	// same session: true
	// sessions opened on the server: 1
}
