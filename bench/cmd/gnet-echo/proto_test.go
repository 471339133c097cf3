package main

import "testing"

func TestCompleteRequests(t *testing.T) {
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		in       string
		n, bytes int
	}{
		{"", 0, 0},
		{req[:10], 0, 0},
		{req, 1, len(req)},
		{req + req + req[:5], 2, 2 * len(req)},
	}
	for _, c := range cases {
		n, consumed := completeRequests([]byte(c.in))
		if n != c.n || consumed != c.bytes {
			t.Errorf("completeRequests(%q) = %d, %d; want %d, %d", c.in, n, consumed, c.n, c.bytes)
		}
	}
}
