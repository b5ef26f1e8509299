// An interop client for deckhand's streaming server built on moby/spdystream, the SPDY
// library kubectl and the kubelet use (Debian: golang-github-docker-spdystream-dev).
// Built and run by the ignored test `go_spdystream_client_interop` in tests/streaming.rs.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/moby/spdystream"
)

// usage: spdyclient exec URL STDIN | spdyclient pf URL PORT PAYLOAD
func main() {
	u, _ := url.Parse(os.Args[2])
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		panic(err)
	}
	proto := "v4.channel.k8s.io"
	if os.Args[1] == "pf" {
		proto = "portforward.k8s.io"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n", u.Path, u.Host, proto)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("status", resp.StatusCode, resp.Header.Get("X-Stream-Protocol-Version"))
	// What client-go's SpdyRoundTripper checks before it trusts the upgrade.
	fmt.Printf("upgrade %q %q\n", resp.Header.Get("Connection"), resp.Header.Get("Upgrade"))
	conn, err := spdystream.NewConnection(c, false)
	if err != nil {
		panic(err)
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	// kubectl pings every 5s; ping once to check the echo.
	if d, err := conn.Ping(); err != nil {
		panic(err)
	} else {
		fmt.Println("ping ok", d < time.Second)
	}
	mk := func(h http.Header) *spdystream.Stream {
		s, err := conn.CreateStream(h, nil, false)
		if err != nil {
			panic(err)
		}
		if err := s.WaitTimeout(5 * time.Second); err != nil {
			panic(err)
		}
		return s
	}
	if os.Args[1] == "exec" {
		errS := mk(http.Header{"streamType": {"error"}})
		in := mk(http.Header{"streamType": {"stdin"}})
		out := mk(http.Header{"streamType": {"stdout"}})
		se := mk(http.Header{"streamType": {"stderr"}})
		in.Write([]byte(os.Args[3]))
		in.Close()
		go io.Copy(io.Discard, se)
		b, err := io.ReadAll(out)
		fmt.Printf("stdout %q %v\n", b, err)
		e, err := io.ReadAll(errS)
		fmt.Printf("error %s %v\n", e, err)
	} else {
		for i := 0; i < 2; i++ {
			// Set canonicalises names, as kubectl does; mixing literal and canonical keys
			// would send two "streamtype" headers.
			h := http.Header{}
			h.Set("streamType", "error")
			h.Set("port", os.Args[3])
			h.Set("requestID", fmt.Sprint(i))
			errS := mk(h)
			errS.Close()
			h.Set("streamType", "data")
			data := mk(h)
			data.Write([]byte(os.Args[4]))
			data.Close()
			b, err := io.ReadAll(data)
			fmt.Printf("data %q %v\n", b, err)
			e, _ := io.ReadAll(errS)
			fmt.Printf("error %q\n", e)
		}
	}
	conn.Close()
}
