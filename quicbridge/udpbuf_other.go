//go:build !linux

package quicbridge

import "net"

// setReceiveBuffer asks for a receive buffer of n bytes on c. Off Linux
// there is no SO_RCVBUFFORCE and no portable way to read the size back:
// it reports n if the request was taken.
func setReceiveBuffer(c *net.UDPConn, n int) (int, error) {
	if err := c.SetReadBuffer(n); err != nil {
		return 0, err
	}
	return n, nil
}
