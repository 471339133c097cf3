package gyrenet_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
)

// testCert makes a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gyrenet test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestHTTPSOverTLSListener: tls.NewListener over a gyrenet listener serves
// HTTPS to the net/http client, over HTTP/1.1 and over HTTP/2 (whose
// server reads and writes the connection from different goroutines).
func TestHTTPSOverTLSListener(t *testing.T) {
	cert, pool := testCert(t)
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			l := listen(t, gyrenet.Config{})
			tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{proto}})
			serveHTTP(t, &http.Server{Handler: testMux()}, tl)
			tr := &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2:   proto == "h2",
				MaxIdleConnsPerHost: 4,
			}
			client := &http.Client{Timeout: 60 * time.Second, Transport: tr}
			defer client.CloseIdleConnections()
			checkClient(t, client, "https://"+l.Addr().String())
			resp, err := client.Get("https://" + l.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := map[string]int{"http/1.1": 1, "h2": 2}[proto]
			if resp.ProtoMajor != want || resp.TLS == nil {
				t.Fatalf("served %s (TLS %v), want HTTP/%d over TLS", resp.Proto, resp.TLS != nil, want)
			}
		})
	}
}
