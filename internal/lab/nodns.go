package lab

import (
	"context"
	"errors"
	"net"
)

// NoDNS makes every name lookup in this process answer from /etc/hosts or
// fail, without a DNS query: the machine's resolver may sit on a private
// address, and tests send traffic only to loopback and the lab. A name that
// is not in /etc/hosts then fails the way an unknown name does.
func NoDNS() {
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("lab: tests send no DNS queries")
		},
	}
}
